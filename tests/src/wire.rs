//! Raw milter protocol client over a unix socket: the MTA side, written here
//! independently of `mb-engine` so that a codec bug cannot hide itself. Used to
//! send well-formed conversations and deliberately broken ones.
//!
//! Frame: `u32 BE length` (command byte + payload), command byte, payload.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Actions Postfix 3.7 offers (SMFIF_* 0x1FF).
pub const POSTFIX_ACTIONS: u32 = 0x1FF;
/// Protocol steps Postfix 3.7 offers (0x1FFFFF).
pub const POSTFIX_PROTOCOL: u32 = 0x1F_FFFF;

/// SMFIP_* flags used here.
pub mod proto {
    /// No CONNECT.
    pub const NOCONNECT: u32 = 0x1;
    /// No HELO.
    pub const NOHELO: u32 = 0x2;
    /// No MAIL.
    pub const NOMAIL: u32 = 0x4;
    /// No RCPT.
    pub const NORCPT: u32 = 0x8;
    /// No BODY.
    pub const NOBODY: u32 = 0x10;
    /// No headers.
    pub const NOHDRS: u32 = 0x20;
    /// No EOH.
    pub const NOEOH: u32 = 0x40;
    /// No reply to headers.
    pub const NR_HDR: u32 = 0x80;
    /// No DATA.
    pub const NODATA: u32 = 0x200;
    /// No reply to CONNECT.
    pub const NR_CONN: u32 = 0x1000;
    /// No reply to HELO.
    pub const NR_HELO: u32 = 0x2000;
    /// No reply to MAIL.
    pub const NR_MAIL: u32 = 0x4000;
    /// No reply to RCPT.
    pub const NR_RCPT: u32 = 0x8000;
    /// No reply to DATA.
    pub const NR_DATA: u32 = 0x1_0000;
    /// No reply to EOH.
    pub const NR_EOH: u32 = 0x4_0000;
    /// No reply to BODY.
    pub const NR_BODY: u32 = 0x8_0000;
}

/// One frame read from the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Reply code byte.
    pub code: u8,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The code as a char, for messages.
    #[must_use]
    pub fn name(&self) -> char {
        char::from(self.code)
    }
}

/// What happened when reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// A full frame.
    Frame(Frame),
    /// The peer closed (EOF or reset), after `partial` bytes of an unfinished frame.
    Closed {
        /// Bytes of an incomplete frame received before the close.
        partial: usize,
    },
    /// Nothing within the timeout.
    Timeout,
}

/// Encodes one frame.
#[must_use]
pub fn frame(code: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len() + 1).expect("payload fits");
    let mut v = Vec::with_capacity(5 + payload.len());
    v.extend_from_slice(&len.to_be_bytes());
    v.push(code);
    v.extend_from_slice(payload);
    v
}

/// NUL-terminated strings, concatenated.
#[must_use]
pub fn strings(parts: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    v
}

/// A raw connection to a milter.
#[derive(Debug)]
pub struct MilterConn {
    /// The socket.
    pub stream: UnixStream,
    /// Protocol flags the filter asked for in OPTNEG (0 before).
    pub proto: u32,
    /// Actions the filter asked for in OPTNEG.
    pub actions: u32,
    /// Version the filter answered.
    pub version: u32,
}

/// The answer to a whole message.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    /// Replies to CONNECT … EOH/BODY, by step name, for steps that expect one.
    pub replies: Vec<(&'static str, Frame)>,
    /// Modification frames at EOM (`h`, `i`, `b`, `q`, ...).
    pub modifications: Vec<Frame>,
    /// The final EOM reply (or an earlier final reject/tempfail).
    pub last: Option<Frame>,
}

impl MilterConn {
    /// Connects (with a 10 s read/write timeout).
    ///
    /// # Errors
    /// When the socket is not there or refuses.
    pub fn connect(path: &Path) -> Result<Self> {
        let stream =
            UnixStream::connect(path).with_context(|| format!("connect {}", path.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self {
            stream,
            proto: 0,
            actions: 0,
            version: 0,
        })
    }

    /// Writes raw bytes.
    ///
    /// # Errors
    /// On I/O error (including EPIPE when the filter closed).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Writes one frame.
    ///
    /// # Errors
    /// On I/O error.
    pub fn send(&mut self, code: u8, payload: &[u8]) -> Result<()> {
        self.send_raw(&frame(code, payload))
    }

    /// Reads one frame, waiting at most `timeout`.
    ///
    /// # Errors
    /// On an I/O error other than EOF/reset/timeout.
    pub fn read_frame(&mut self, timeout: Duration) -> Result<ReadOutcome> {
        let deadline = Instant::now() + timeout;
        let mut buf = Vec::new();
        let mut need = 4usize;
        let mut chunk = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(ReadOutcome::Timeout);
            }
            self.stream.set_read_timeout(Some(left))?;
            let want = (need - buf.len()).min(chunk.len());
            match self.stream.read(&mut chunk[..want]) {
                Ok(0) => return Ok(ReadOutcome::Closed { partial: buf.len() }),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(ReadOutcome::Timeout)
                }
                Err(e)
                    if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) =>
                {
                    return Ok(ReadOutcome::Closed { partial: buf.len() })
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
            if buf.len() == 4 && need == 4 {
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if len == 0 || len > 64 * 1024 * 1024 {
                    bail!("filter sent a frame length of {len}");
                }
                need = 4 + len;
            }
            if need > 4 && buf.len() == need {
                return Ok(ReadOutcome::Frame(Frame {
                    code: buf[4],
                    payload: buf[5..].to_vec(),
                }));
            }
        }
    }

    /// Reads until the filter closes the connection, collecting any frames it
    /// sent first. Returns the frames, or an error if it stays open past `timeout`.
    ///
    /// # Errors
    /// When the connection is still open after `timeout`.
    pub fn expect_closed(&mut self, timeout: Duration) -> Result<Vec<Frame>> {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left)? {
                ReadOutcome::Frame(f) => frames.push(f),
                ReadOutcome::Closed { .. } => return Ok(frames),
                ReadOutcome::Timeout => {
                    bail!("filter kept the connection open for {timeout:?} (frames so far: {frames:?})")
                }
            }
        }
    }

    /// Reads one expected reply frame.
    ///
    /// # Errors
    /// When the filter closes or stays silent for 10 s.
    pub fn reply(&mut self, what: &str) -> Result<Frame> {
        match self.read_frame(Duration::from_secs(10))? {
            ReadOutcome::Frame(f) => Ok(f),
            other => bail!("no reply to {what}: {other:?}"),
        }
    }

    /// OPTNEG as Postfix 3.7 sends it (version 6, actions 0x1FF, protocol
    /// 0x1FFFFF); stores what the filter asked for.
    ///
    /// # Errors
    /// When the reply is not a well-formed `O`.
    pub fn negotiate(&mut self) -> Result<Frame> {
        let mut p = Vec::new();
        p.extend_from_slice(&6u32.to_be_bytes());
        p.extend_from_slice(&POSTFIX_ACTIONS.to_be_bytes());
        p.extend_from_slice(&POSTFIX_PROTOCOL.to_be_bytes());
        self.send(b'O', &p)?;
        let f = self.reply("OPTNEG")?;
        if f.code != b'O' || f.payload.len() < 12 {
            bail!("OPTNEG answered with {:?}", f);
        }
        let u = |i: usize| {
            u32::from_be_bytes([
                f.payload[i],
                f.payload[i + 1],
                f.payload[i + 2],
                f.payload[i + 3],
            ])
        };
        self.version = u(0);
        self.actions = u(4);
        self.proto = u(8);
        Ok(f)
    }

    fn has(&self, flag: u32) -> bool {
        self.proto & flag != 0
    }

    /// Sends one step unless the filter negotiated it away (`no`), and reads
    /// the reply unless it negotiated no-reply (`nr`). Returns the reply.
    fn step(
        &mut self,
        code: u8,
        payload: &[u8],
        no: u32,
        nr: u32,
        what: &'static str,
    ) -> Result<Option<Frame>> {
        if no != 0 && self.has(no) {
            return Ok(None);
        }
        self.send(code, payload)?;
        if nr != 0 && self.has(nr) {
            return Ok(None);
        }
        Ok(Some(self.reply(what)?))
    }

    /// One whole message as Postfix sends it over SMTP (macros omitted):
    /// [`MilterConn::envelope`] then [`MilterConn::content`].
    ///
    /// # Errors
    /// On I/O failure or a missing reply.
    pub fn message(
        &mut self,
        from: &str,
        rcpts: &[&str],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Conversation> {
        let mut conv = self.envelope(from, rcpts)?;
        if conv.last.is_some() {
            return Ok(conv);
        }
        self.content(&mut conv, headers, body)?;
        Ok(conv)
    }

    /// CONNECT, HELO, MAIL, RCPT… Stops at the first reply that is not `c`
    /// (then `last` is set).
    ///
    /// # Errors
    /// On I/O failure or a missing reply.
    pub fn envelope(&mut self, from: &str, rcpts: &[&str]) -> Result<Conversation> {
        let mut conv = Conversation::default();
        let mut connect = strings(&["localhost"]);
        connect.push(b'4');
        connect.extend_from_slice(&4321u16.to_be_bytes());
        connect.extend_from_slice(&strings(&["127.0.0.1"]));
        let from_arg = format!("<{from}>");
        let mut steps: Vec<(u8, Vec<u8>, u32, u32, &'static str)> = vec![
            (b'C', connect, proto::NOCONNECT, proto::NR_CONN, "CONNECT"),
            (
                b'H',
                strings(&["client.mbtest.example"]),
                proto::NOHELO,
                proto::NR_HELO,
                "HELO",
            ),
            (
                b'M',
                strings(&[&from_arg]),
                proto::NOMAIL,
                proto::NR_MAIL,
                "MAIL",
            ),
        ];
        for r in rcpts {
            steps.push((
                b'R',
                strings(&[&format!("<{r}>")]),
                proto::NORCPT,
                proto::NR_RCPT,
                "RCPT",
            ));
        }
        self.run_steps(&mut conv, steps)?;
        Ok(conv)
    }

    /// DATA, headers, EOH, body chunks and EOM, after [`MilterConn::envelope`].
    ///
    /// # Errors
    /// On I/O failure or a missing reply.
    pub fn content(
        &mut self,
        conv: &mut Conversation,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<()> {
        let mut steps: Vec<(u8, Vec<u8>, u32, u32, &'static str)> =
            vec![(b'T', Vec::new(), proto::NODATA, proto::NR_DATA, "DATA")];
        for (n, v) in headers {
            steps.push((
                b'L',
                strings(&[n, v]),
                proto::NOHDRS,
                proto::NR_HDR,
                "HEADER",
            ));
        }
        steps.push((b'N', Vec::new(), proto::NOEOH, proto::NR_EOH, "EOH"));
        for chunk in body.chunks(65_535) {
            steps.push((b'B', chunk.to_vec(), proto::NOBODY, proto::NR_BODY, "BODY"));
        }
        self.run_steps(conv, steps)?;
        if conv.last.is_some() {
            return Ok(());
        }
        self.send(b'E', &[])?;
        loop {
            let f = self.reply("EOM")?;
            match f.code {
                b'h' | b'i' | b'b' | b'q' | b'm' | b'+' | b'-' | b'2' | b'e' | b'p' => {
                    conv.modifications.push(f);
                }
                _ => {
                    conv.last = Some(f);
                    return Ok(());
                }
            }
        }
    }

    fn run_steps(
        &mut self,
        conv: &mut Conversation,
        steps: Vec<(u8, Vec<u8>, u32, u32, &'static str)>,
    ) -> Result<()> {
        for (code, payload, no, nr, what) in steps {
            if let Some(f) = self.step(code, &payload, no, nr, what)? {
                let stop = f.code != b'c';
                conv.replies.push((what, f.clone()));
                if stop {
                    conv.last = Some(f);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// OPTNEG + one plain message that must be accepted (`a` or `c` at EOM).
    ///
    /// # Errors
    /// When anything else happens.
    pub fn accepted_message(&mut self) -> Result<Conversation> {
        self.negotiate()?;
        let conv = self.message(
            "probe@source.example",
            &["rcpt@dest.example"],
            &[("From", "<probe@source.example>"), ("Subject", "probe")],
            b"hello\r\n",
        )?;
        match conv.last.as_ref().map(|f| f.code) {
            Some(b'a' | b'c') => Ok(conv),
            _ => bail!("plain message not accepted: {conv:?}"),
        }
    }

    /// Polite end: QUIT (`Q`).
    pub fn quit(mut self) {
        self.send(b'Q', &[]).ok();
    }
}

/// A tiny accept-all milter served from threads of the test process, used to
/// check the Postfix harness itself without `mbd`: negotiates version 6 with
/// ADDHDRS only and every step answered, says `c` to everything, and at EOM
/// adds `X-Harness-Milter: yes` and accepts.
#[derive(Debug)]
pub struct ReferenceMilter {
    path: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Connections served so far.
    pub connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ReferenceMilter {
    /// Listens on `path` (mode 0777 so user postfix can connect).
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub fn start(path: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        std::fs::remove_file(path).ok();
        let listener = std::os::unix::net::UnixListener::bind(path)
            .with_context(|| format!("bind {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s2, c2) = (stop.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                c2.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve_reference(conn));
            }
        });
        Ok(Self {
            path: path.to_path_buf(),
            stop,
            connections,
        })
    }

    /// `unix:<path>`.
    #[must_use]
    pub fn spec(&self) -> String {
        format!("unix:{}", self.path.display())
    }
}

impl Drop for ReferenceMilter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        UnixStream::connect(&self.path).ok();
        std::fs::remove_file(&self.path).ok();
    }
}

fn serve_reference(mut s: UnixStream) {
    s.set_read_timeout(Some(Duration::from_secs(120))).ok();
    loop {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > 1 << 20 {
            return;
        }
        let mut body = vec![0u8; len];
        if s.read_exact(&mut body).is_err() {
            return;
        }
        let out: Vec<u8> = match body[0] {
            b'O' => {
                let mut p = Vec::new();
                p.extend_from_slice(&6u32.to_be_bytes());
                p.extend_from_slice(&1u32.to_be_bytes());
                p.extend_from_slice(&0u32.to_be_bytes());
                frame(b'O', &p)
            }
            b'C' | b'H' | b'M' | b'R' | b'T' | b'L' | b'N' | b'B' | b'U' => frame(b'c', &[]),
            b'E' => {
                let mut v = frame(b'h', &strings(&["X-Harness-Milter", "yes"]));
                v.extend_from_slice(&frame(b'a', &[]));
                v
            }
            b'Q' => return,
            _ => Vec::new(), // D (macros), A (abort): no reply
        };
        if !out.is_empty() && s.write_all(&out).is_err() {
            return;
        }
    }
}
