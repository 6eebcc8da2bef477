//! A scriptable SMTP relay on 127.0.0.1 for the delivery tests: it takes
//! what mbd delivers, refuses the recipients a rule names, and records every
//! accepted message (envelope and content) for the test to look at.
//!
//! Plain threads and `std::net`: one thread accepts, one per connection
//! speaks SMTP (EHLO with PIPELINING and 8BITMIME, MAIL, RCPT, DATA, RSET,
//! NOOP, QUIT), line by line, so pipelined commands work. Stopped on drop.
//! [`Relay::broken_starttls`] also announces STARTTLS and fails every
//! handshake (for the `relay_tls` tests); [`Relay::hanging_up_idle`] says
//! 421 and closes a connection that sent nothing for a while, as Postfix's
//! smtpd does after `smtpd_timeout`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::harness::wait_for;

/// One message the relay accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `MAIL FROM` address without brackets (empty for `<>`).
    pub mail_from: String,
    /// Accepted recipients, without brackets.
    pub rcpts: Vec<String>,
    /// The content, un-stuffed, CRLF line ends.
    pub data: String,
}

impl Accepted {
    /// Values of every header named `name` (case-insensitive), unfolded.
    #[must_use]
    pub fn header_values(&self, name: &str) -> Vec<String> {
        let head = self
            .data
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .replace("\r\n\t", " ")
            .replace("\r\n ", " ");
        head.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

/// Decides the reply to `RCPT TO:<addr>`: `None` accepts, `Some(line)` is
/// the whole reply line (e.g. `550 5.1.1 no such user`).
pub type RcptRule = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The relay. Dropping it stops accepting and closes idle connections.
pub struct Relay {
    /// Its port on 127.0.0.1.
    pub port: u16,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Relay {
    /// Listens on `127.0.0.1:port`, refusing recipients by `rule`.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start(port: u16, rule: Box<RcptRule>) -> Result<Self> {
        Self::start_with(port, rule, false, None)
    }

    /// A relay that accepts everything and hangs up (421, then close) on a
    /// connection that sent nothing for `idle` (checked every 200 ms).
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn hanging_up_idle(port: u16, idle: Duration) -> Result<Self> {
        Self::start_with(port, Box::new(|_| None), false, Some(idle))
    }

    /// A relay that accepts everything and announces STARTTLS, but answers
    /// the STARTTLS command's 220 with bytes that are not TLS and hangs up
    /// (a broken TLS peer: every handshake fails).
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn broken_starttls(port: u16) -> Result<Self> {
        Self::start_with(port, Box::new(|_| None), true, None)
    }

    fn start_with(
        port: u16,
        rule: Box<RcptRule>,
        broken_tls: bool,
        idle_close: Option<Duration>,
    ) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("bind the test relay on 127.0.0.1:{port}"))?;
        listener.set_nonblocking(true)?;
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let rule: Arc<RcptRule> = Arc::from(rule);
        let acceptor = {
            let (accepted, connections, stop) = (
                Arc::clone(&accepted),
                Arc::clone(&connections),
                Arc::clone(&stop),
            );
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let (accepted, stop, rule) =
                                (Arc::clone(&accepted), Arc::clone(&stop), Arc::clone(&rule));
                            thread::spawn(move || {
                                let how = Serve {
                                    broken_tls,
                                    idle_close,
                                };
                                let _ = serve(stream, &accepted, &stop, &*rule, how);
                            });
                        }
                        Err(_) => thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Ok(Self {
            port,
            accepted,
            connections,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// A relay that accepts everything.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn accept_all(port: u16) -> Result<Self> {
        Self::start(port, Box::new(|_| None))
    }

    /// Every message accepted so far.
    #[must_use]
    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` messages were accepted; returns them all.
    ///
    /// # Errors
    /// On timeout, with what arrived.
    pub fn wait(&self, n: usize, timeout: Duration) -> Result<Vec<Accepted>> {
        wait_for(timeout, Duration::from_millis(50), || {
            let got = self.accepted();
            (got.len() >= n).then_some(got)
        })
        .ok_or_else(|| {
            anyhow!(
                "the test relay got {} of {n} messages within {timeout:?}",
                self.accepted().len()
            )
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// How a connection is served: see the constructors of [`Relay`].
#[derive(Clone, Copy)]
struct Serve {
    broken_tls: bool,
    idle_close: Option<Duration>,
}

fn serve(
    stream: TcpStream,
    accepted: &Mutex<Vec<Accepted>>,
    stop: &AtomicBool,
    rule: &RcptRule,
    how: Serve,
) -> std::io::Result<()> {
    let Serve {
        broken_tls,
        idle_close,
    } = how;
    let mut quiet_since = std::time::Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 relay.mbtest.example ESMTP test relay\r\n")?;
    let mut mail_from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    loop {
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(()),
            Ok(_) if !line.ends_with(b"\n") => return Ok(()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // What arrived before the timeout stays in `line`.
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if line.is_empty() && idle_close.is_some_and(|d| quiet_since.elapsed() >= d) {
                    writer
                        .write_all(b"421 4.4.2 relay.mbtest.example Error: timeout exceeded\r\n")?;
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        line.clear();
        let line = text;
        let cmd = line.trim_end_matches(['\r', '\n']).to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") && broken_tls {
            "250-relay.mbtest.example\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n".into()
        } else if upper == "STARTTLS" && broken_tls {
            writer.write_all(b"220 2.0.0 Ready to start TLS\r\n")?;
            thread::sleep(Duration::from_millis(50));
            writer.write_all(b"this is not TLS at all\r\n")?;
            return Ok(());
        } else if upper.starts_with("EHLO") {
            "250-relay.mbtest.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n"
                .into()
        } else if upper.starts_with("HELO") {
            "250 relay.mbtest.example\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            mail_from = Some(path_of(&cmd[10..]));
            rcpts.clear();
            "250 2.1.0 Ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let addr = path_of(&cmd[8..]);
            match rule(&addr) {
                Some(refusal) => format!("{refusal}\r\n"),
                None => {
                    rcpts.push(addr);
                    "250 2.1.5 Ok\r\n".into()
                }
            }
        } else if upper == "DATA" {
            if mail_from.is_none() || rcpts.is_empty() {
                "554 5.5.1 Error: no valid recipients\r\n".into()
            } else {
                writer.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let data = read_data(&mut reader)?;
                accepted
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(Accepted {
                        mail_from: mail_from.take().unwrap_or_default(),
                        rcpts: std::mem::take(&mut rcpts),
                        data,
                    });
                "250 2.0.0 Ok: queued\r\n".into()
            }
        } else if upper == "RSET" {
            mail_from = None;
            rcpts.clear();
            "250 2.0.0 Ok\r\n".into()
        } else if upper == "NOOP" {
            "250 2.0.0 Ok\r\n".into()
        } else if upper == "QUIT" {
            writer.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            "502 5.5.2 Error: command not recognized\r\n".into()
        };
        writer.write_all(reply.as_bytes())?;
        quiet_since = std::time::Instant::now();
    }
}

/// `<a@b> SIZE=…` → `a@b`.
fn path_of(arg: &str) -> String {
    let arg = arg.trim();
    let end = arg.find('>').map_or(arg.len(), |i| i + 1);
    arg[..end]
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// Reads DATA content up to the lone dot, un-stuffing.
fn read_data(reader: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
        if !line.ends_with(b"\n") {
            continue;
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(String::from_utf8_lossy(&data).into_owned());
        }
        let l = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(l);
        line.clear();
    }
}
