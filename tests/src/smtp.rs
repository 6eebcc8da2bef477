//! A minimal SMTP client over `std::net::TcpStream`, for sessions a test must
//! hold open across an event (a reload, a restart). Loopback only.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::postfix::{crlf, Reply};

/// One open SMTP session.
#[derive(Debug)]
pub struct SmtpSession {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Every line sent and received, for assertion messages.
    pub transcript: String,
}

impl SmtpSession {
    /// Connects to `127.0.0.1:port` and reads the greeting.
    ///
    /// # Errors
    /// On connection or read failure (read timeout 60 s).
    pub fn connect(port: u16) -> Result<(Self, Reply)> {
        let stream = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(10),
        )
        .with_context(|| format!("connect 127.0.0.1:{port}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        let mut s = Self {
            reader: BufReader::new(stream),
            writer,
            transcript: String::new(),
        };
        let greeting = s.read_reply()?;
        Ok((s, greeting))
    }

    /// Reads one (possibly multi-line) reply.
    ///
    /// # Errors
    /// On EOF, timeout or a malformed line.
    pub fn read_reply(&mut self) -> Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line)?;
            if n == 0 {
                bail!(
                    "connection closed by server; transcript:\n{}",
                    self.transcript
                );
            }
            self.transcript.push_str("<- ");
            self.transcript.push_str(&line);
            let l = line.trim_end_matches(['\r', '\n']);
            if l.len() < 3 {
                bail!("malformed reply line {l:?}");
            }
            let code: u16 = l[..3]
                .parse()
                .with_context(|| format!("reply line {l:?}"))?;
            lines.push(l.get(4..).unwrap_or("").to_string());
            if l.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply {
                    code,
                    text: lines.join("\n"),
                });
            }
        }
    }

    /// Sends one command line and reads the reply.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn cmd(&mut self, line: &str) -> Result<Reply> {
        self.transcript.push_str("-> ");
        self.transcript.push_str(line);
        self.transcript.push('\n');
        self.writer.write_all(line.as_bytes())?;
        self.writer.write_all(b"\r\n")?;
        self.writer.flush()?;
        self.read_reply()
    }

    /// DATA, then the message (dot-stuffed, CRLF) and the final dot. Returns
    /// the DATA reply and, if it was 354, the end-of-data reply.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn data(&mut self, message: &str) -> Result<(Reply, Option<Reply>)> {
        let r = self.cmd("DATA")?;
        if r.code != 354 {
            return Ok((r, None));
        }
        let mut buf = String::new();
        for line in crlf(message).split_inclusive("\r\n") {
            if line.starts_with('.') {
                buf.push('.');
            }
            buf.push_str(line);
        }
        if !buf.ends_with("\r\n") {
            buf.push_str("\r\n");
        }
        buf.push_str(".\r\n");
        self.transcript.push_str("-> <message>\n-> .\n");
        self.writer.write_all(buf.as_bytes())?;
        self.writer.flush()?;
        let end = self.read_reply()?;
        Ok((r, Some(end)))
    }

    /// QUIT (errors ignored: the server may already have closed).
    pub fn quit(mut self) {
        self.cmd("QUIT").ok();
    }
}
