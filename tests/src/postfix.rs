//! A private Postfix instance per test, modelled on the shared `pf-harness`:
//! own config dir, queue and maillog; every service with `chroot = n`;
//! smtpd on `127.0.0.1:<port>`; everything relayed to an `smtp-sink` on
//! `127.0.0.1:<sink port>` that dumps each message to a file; no DNS at all.
//!
//! Needs root (Postfix's `-c DIR` without `alternate_config_directories`,
//! queue ownership, `smtp-sink -u postfix`).

use std::ffi::CString;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::harness::{
    describe, is_root, lease_port, pid_alive, port_listening, require_tool, run_cmd, run_cmd_input,
    signal, tail, wait_for, PortLease, CMD_TIMEOUT,
};

/// Where the distribution's master.cf is found, in order of preference.
const MASTER_CF_SOURCES: [&str; 3] = [
    "/etc/postfix/master.cf",
    "/etc/postfix/master.cf.proto",
    "/usr/share/postfix/master.cf.dist",
];

/// `myhostname` of every instance.
pub const HOSTNAME: &str = "mx.mbtest.example";

/// How a Postfix instance is set up.
#[derive(Debug, Clone)]
pub struct PostfixOpts {
    /// `smtpd_milters` (e.g. `unix:/tmp/.../mb-milter.sock`); `None`: no milter.
    pub milter: Option<String>,
    /// `non_smtpd_milters` (sendmail/pickup path); `None`: same as `milter`.
    pub non_smtpd_milter: Option<String>,
    /// `milter_default_action`.
    pub default_action: String,
    /// `milter_connect_timeout`, seconds.
    pub connect_timeout: u32,
    /// `milter_command_timeout`, seconds.
    pub command_timeout: u32,
    /// `milter_content_timeout`, seconds.
    pub content_timeout: u32,
    /// Extra `main.cf` settings (`name`, `value`); one named like a base
    /// setting replaces it.
    pub main_extra: Vec<(String, String)>,
}

impl Default for PostfixOpts {
    fn default() -> Self {
        Self {
            milter: None,
            non_smtpd_milter: None,
            default_action: "tempfail".into(),
            connect_timeout: 5,
            command_timeout: 10,
            content_timeout: 20,
            main_extra: Vec::new(),
        }
    }
}

impl PostfixOpts {
    /// Postfix with this milter for SMTP and non-SMTP mail, default action tempfail.
    #[must_use]
    pub fn with_milter(spec: &str) -> Self {
        Self {
            milter: Some(spec.to_string()),
            ..Self::default()
        }
    }
}

/// One SMTP reply (all lines of a multi-line reply joined with `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The 3-digit code.
    pub code: u16,
    /// The text after the code, lines joined with `\n`.
    pub text: String,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// What an SMTP client saw, per command (parsed from a swaks transcript).
#[derive(Debug, Clone, Default)]
pub struct SmtpResult {
    /// swaks exit code.
    pub exit_code: Option<i32>,
    /// The full transcript, for assertion messages.
    pub transcript: String,
    /// 220 greeting.
    pub greeting: Option<Reply>,
    /// Reply to EHLO.
    pub ehlo: Option<Reply>,
    /// Reply to MAIL FROM.
    pub mail: Option<Reply>,
    /// Replies to each RCPT TO.
    pub rcpt: Vec<Reply>,
    /// Reply to DATA (354 when accepted).
    pub data: Option<Reply>,
    /// Reply to the end of data (the final verdict on the message).
    pub eod: Option<Reply>,
}

impl SmtpResult {
    /// Code of the MAIL reply, 0 if none.
    #[must_use]
    pub fn mail_code(&self) -> u16 {
        self.mail.as_ref().map_or(0, |r| r.code)
    }

    /// Code of the end-of-data reply, 0 if none.
    #[must_use]
    pub fn eod_code(&self) -> u16 {
        self.eod.as_ref().map_or(0, |r| r.code)
    }

    /// Parses a swaks transcript (`-> ` client lines, `<- `/`<** ` server lines).
    #[must_use]
    pub fn parse_swaks(transcript: &str, exit_code: Option<i32>) -> Self {
        #[derive(Clone, Copy, PartialEq)]
        enum Stage {
            Greeting,
            Ehlo,
            Mail,
            Rcpt,
            Data,
            Eod,
            Other,
        }
        let mut r = Self {
            exit_code,
            transcript: transcript.to_string(),
            ..Self::default()
        };
        let mut stage = Stage::Greeting;
        let mut pending: Vec<String> = Vec::new();
        for line in transcript.lines() {
            let trimmed = line.trim_start();
            if let Some(cmd) = trimmed
                .strip_prefix("-> ")
                .or_else(|| trimmed.strip_prefix("~> "))
            {
                let up = cmd.to_ascii_uppercase();
                stage = if up.starts_with("EHLO") || up.starts_with("HELO") {
                    Stage::Ehlo
                } else if up.starts_with("MAIL FROM") {
                    Stage::Mail
                } else if up.starts_with("RCPT TO") {
                    Stage::Rcpt
                } else if up == "DATA" {
                    Stage::Data
                } else if up.ends_with("LINES SENT") || up == "." {
                    Stage::Eod
                } else {
                    Stage::Other
                };
                continue;
            }
            let server = line
                .strip_prefix("<-  ")
                .or_else(|| line.strip_prefix("<** "))
                .or_else(|| line.strip_prefix("<~  "))
                .or_else(|| line.strip_prefix("<~* "));
            let Some(s) = server else { continue };
            let code: u16 = s.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            let sep = s.as_bytes().get(3).copied().unwrap_or(b' ');
            pending.push(s.get(4..).unwrap_or("").to_string());
            if sep == b'-' {
                continue;
            }
            let reply = Reply {
                code,
                text: pending.join("\n"),
            };
            pending.clear();
            match stage {
                Stage::Greeting => r.greeting = Some(reply),
                Stage::Ehlo => r.ehlo = Some(reply),
                Stage::Mail => r.mail = Some(reply),
                Stage::Rcpt => r.rcpt.push(reply),
                Stage::Data => r.data = Some(reply),
                Stage::Eod => r.eod = Some(reply),
                Stage::Other => {}
            }
        }
        r
    }
}

/// Who the SMTP client of [`Postfix::send_as`] says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpClient {
    /// The EHLO name.
    pub helo: String,
    /// `XCLIENT ADDR=`: the client address Postfix should use from then on.
    pub xclient_addr: Option<String>,
    /// `XCLIENT NAME=` (only sent with an address).
    pub xclient_name: Option<String>,
}

impl Default for SmtpClient {
    fn default() -> Self {
        Self {
            helo: "client.mbtest.example".into(),
            xclient_addr: None,
            xclient_name: None,
        }
    }
}

impl SmtpClient {
    /// The default client with this EHLO name.
    #[must_use]
    pub fn helo(name: &str) -> Self {
        Self {
            helo: name.to_string(),
            ..Self::default()
        }
    }

    /// The default client, posing (XCLIENT) as `addr` with reverse name `name`.
    #[must_use]
    pub fn xclient(addr: &str, name: &str) -> Self {
        Self {
            xclient_addr: Some(addr.to_string()),
            xclient_name: Some(name.to_string()),
            ..Self::default()
        }
    }
}

/// The message of `msgs` whose Subject is exactly `subject`; panics, listing
/// what was delivered, when there is none.
#[must_use]
pub fn with_subject<'a>(msgs: &'a [Delivered], subject: &str) -> &'a Delivered {
    msgs.iter()
        .find(|m| m.header_values("Subject") == [subject])
        .unwrap_or_else(|| panic!("{subject:?} not delivered: {msgs:#?}"))
}

/// A message captured by smtp-sink.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Dump file.
    pub path: PathBuf,
    /// The whole dump (smtp-sink headers, then the message), `\n` line ends.
    pub raw: String,
}

impl Delivered {
    /// The message as Postfix relayed it: everything after smtp-sink's own
    /// three-line `Received:` header.
    #[must_use]
    pub fn message(&self) -> &str {
        // smtp-sink's block ends with the Received header: "Received: from ...\n\tby ... (smtp-sink) ...;\n\t<date>\n"
        if let Some(pos) = self.raw.find("(smtp-sink)") {
            let rest = &self.raw[pos..];
            // skip to the end of the date continuation line
            if let Some(nl) = rest.find('\n') {
                let after = &rest[nl + 1..];
                if let Some(nl2) = after.find('\n') {
                    return &after[nl2 + 1..];
                }
            }
        }
        &self.raw
    }

    /// Header block of the relayed message.
    #[must_use]
    pub fn headers(&self) -> &str {
        let m = self.message();
        m.find("\n\n").map_or(m, |p| &m[..=p])
    }

    /// Body of the relayed message with every trailing line end removed
    /// (smtp-sink appends an empty line to each dump, and clients may end
    /// the data with an extra CRLF, so trailing empty lines are ambiguous).
    #[must_use]
    pub fn body(&self) -> &str {
        let m = self.message();
        let b = m.find("\n\n").map_or("", |p| &m[p + 2..]);
        b.trim_end_matches(['\r', '\n'])
    }

    /// Values of every header named `name` (case-insensitive), unfolded and trimmed.
    #[must_use]
    pub fn header_values(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur: Option<String> = None;
        for line in self.headers().lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(c) = cur.as_mut() {
                    c.push(' ');
                    c.push_str(line.trim());
                }
                continue;
            }
            if let Some(c) = cur.take() {
                out.push(c);
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    cur = Some(v.trim().to_string());
                }
            }
        }
        if let Some(c) = cur {
            out.push(c);
        }
        out
    }

    /// The envelope sender as relayed (`<addr>`, first word of smtp-sink's
    /// `X-Mail-Args`; ESMTP parameters dropped).
    #[must_use]
    pub fn mail_args(&self) -> String {
        self.raw
            .lines()
            .find_map(|l| l.strip_prefix("X-Mail-Args: "))
            .and_then(|a| a.split_whitespace().next())
            .unwrap_or_default()
            .to_string()
    }

    /// The envelope recipients as relayed (`<addr>`, first word of each
    /// `X-Rcpt-Args`; ORCPT= etc. dropped).
    #[must_use]
    pub fn rcpt_args(&self) -> Vec<String> {
        self.raw
            .lines()
            .filter_map(|l| l.strip_prefix("X-Rcpt-Args: "))
            .filter_map(|a| a.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }
}

/// One private Postfix instance and its smtp-sink. Dropping it runs
/// `postfix -c DIR stop`, then kills the sink (by pid).
#[derive(Debug)]
pub struct Postfix {
    /// Instance directory.
    pub dir: PathBuf,
    /// `config_directory`.
    pub etc: PathBuf,
    /// `queue_directory`.
    pub spool: PathBuf,
    /// `maillog_file`.
    pub maillog: PathBuf,
    /// Where smtp-sink dumps each message.
    pub sink_dir: PathBuf,
    /// smtpd port on 127.0.0.1.
    pub port: u16,
    /// smtp-sink port on 127.0.0.1.
    pub sink_port: u16,
    sink: Option<Child>,
    sink_out: PathBuf,
    master_pid: Option<u32>,
    _leases: [PortLease; 2],
}

static MSG_SEQ: AtomicU32 = AtomicU32::new(0);

fn postfix_ids() -> Result<(u32, u32)> {
    let name = CString::new("postfix").expect("no nul");
    // SAFETY: getpwnam with a valid C string; the result is read at once,
    // before any other getpw* call in this thread.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!("user `postfix` does not exist: install the Debian package `postfix`");
    }
    // SAFETY: pw is non-null and points to libc's static passwd struct.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))
}

/// Asserts that every tool the Postfix tests need is installed.
///
/// # Panics
/// With the package to install when one is missing, or when not root.
pub fn require_postfix() {
    for (t, p) in [
        ("postfix", "postfix"),
        ("postconf", "postfix"),
        ("postqueue", "postfix"),
        ("postsuper", "postfix"),
        ("postkick", "postfix"),
        ("sendmail", "postfix"),
        ("smtp-sink", "postfix"),
        ("swaks", "swaks"),
    ] {
        require_tool(t, p);
    }
    assert!(
        MASTER_CF_SOURCES.iter().any(|p| Path::new(p).exists()),
        "no master.cf template ({MASTER_CF_SOURCES:?}): reinstall the Debian package `postfix`"
    );
    assert!(
        is_root(),
        "the Postfix end-to-end tests must run as root (private Postfix instances)"
    );
}

impl Postfix {
    /// Builds and starts an instance in `<dir>` (created if needed).
    ///
    /// # Errors
    /// When configuration, `postfix check`, the sink or `postfix start` fail;
    /// the message includes Postfix's own diagnostics.
    pub fn start(dir: &Path, opts: &PostfixOpts) -> Result<Self> {
        require_postfix();
        let smtpd = lease_port()?;
        let sink = lease_port()?;
        let (uid, gid) = postfix_ids()?;
        let dir = dir.to_path_buf();
        let etc = dir.join("etc");
        let spool = dir.join("spool");
        let data = dir.join("data");
        let logdir = dir.join("log");
        let run = dir.join("run");
        let sink_dir = dir.join("sink");
        for d in [&dir, &etc, &logdir, &run, &spool, &data, &sink_dir] {
            fs::create_dir_all(d)?;
            fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
        }
        // queue dir: root-owned 0755; `postfix check` creates the rest
        chown(&spool, 0, 0)?;
        chown(&data, uid, gid)?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))?;
        // smtp-sink runs as postfix and writes its dumps here
        chown(&sink_dir, uid, gid)?;
        let maillog = logdir.join("maillog");
        File::create(&maillog)?;

        let mut pf = Self {
            dir: dir.clone(),
            etc: etc.clone(),
            spool: spool.clone(),
            maillog: maillog.clone(),
            sink_dir: sink_dir.clone(),
            port: smtpd.port,
            sink_port: sink.port,
            sink: None,
            sink_out: run.join("sink.out"),
            master_pid: None,
            _leases: [smtpd, sink],
        };
        fs::write(etc.join("main.cf"), pf.main_cf(opts, &data))?;
        let master_src = MASTER_CF_SOURCES
            .iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| {
                anyhow!("no master.cf template: reinstall the Debian package `postfix`")
            })?;
        fs::copy(master_src, etc.join("master.cf"))?;
        if Path::new("/etc/postfix/dynamicmaps.cf").exists() {
            fs::copy("/etc/postfix/dynamicmaps.cf", etc.join("dynamicmaps.cf"))?;
            let d = Path::new("/etc/postfix/dynamicmaps.cf.d");
            if d.is_dir() {
                let to = etc.join("dynamicmaps.cf.d");
                fs::create_dir_all(&to)?;
                for e in fs::read_dir(d)? {
                    let e = e?;
                    fs::copy(e.path(), to.join(e.file_name()))?;
                }
            }
        }
        let svc = format!("127.0.0.1:{}", pf.port);
        pf.postconf(&["-M#", "smtp/inet"])?;
        pf.postconf(&["-M", &format!("{svc}/inet={svc} inet n - n - - smtpd")])?;
        pf.postconf(&["-F", "*/*/chroot = n"])?;
        let out = run_cmd(
            Command::new("postconf")
                .arg("-c")
                .arg(&etc)
                .args(["-M", "postlog/unix-dgram"]),
            CMD_TIMEOUT,
        )?;
        if !String::from_utf8_lossy(&out.stdout).contains("postlogd") {
            pf.postconf(&[
                "-M",
                "postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd",
            ])?;
        }
        pf.postfix_cmd("check")?;
        pf.start_sink()?;
        pf.postfix_cmd("start")?;
        let port = pf.port;
        if wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
            port_listening(port).then_some(())
        })
        .is_none()
        {
            bail!(
                "smtpd did not come up on 127.0.0.1:{port}; maillog:\n{}",
                tail(&pf.maillog(), 40)
            );
        }
        pf.master_pid = fs::read_to_string(spool.join("pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Ok(pf)
    }

    fn main_cf(&self, o: &PostfixOpts, data: &Path) -> String {
        let milter = o.milter.clone().unwrap_or_default();
        let non_smtpd = o.non_smtpd_milter.clone().unwrap_or_else(|| milter.clone());
        let s = format!(
            "# written by mb-tests: private instance, loopback only\n\
             compatibility_level = 3.6\n\
             queue_directory = {spool}\n\
             data_directory = {data}\n\
             syslog_name = postfix-mbt\n\
             maillog_file = {maillog}\n\
             maillog_file_prefixes = /var, /dev/stdout, {dir}\n\
             myhostname = {HOSTNAME}\n\
             mydomain = mbtest.example\n\
             myorigin = $myhostname\n\
             mydestination =\n\
             local_recipient_maps =\n\
             alias_maps =\n\
             alias_database =\n\
             relay_domains =\n\
             relayhost = [127.0.0.1]:{sink}\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             smtpd_relay_restrictions = permit_mynetworks, reject\n\
             smtpd_recipient_restrictions =\n\
             smtpd_banner = $myhostname ESMTP mb-tests\n\
             biff = no\n\
             append_dot_mydomain = no\n\
             readme_directory = no\n\
             smtp_dns_support_level = disabled\n\
             smtp_host_lookup = native\n\
             lmtp_host_lookup = native\n\
             smtpd_tls_security_level = none\n\
             smtp_tls_security_level = none\n\
             queue_run_delay = 5s\n\
             minimal_backoff_time = 5s\n\
             maximal_backoff_time = 10s\n\
             delay_warning_time = 0\n\
             smtpd_milters = {milter}\n\
             non_smtpd_milters = {non_smtpd}\n\
             milter_default_action = {action}\n\
             milter_protocol = 6\n\
             milter_connect_timeout = {ct}s\n\
             milter_command_timeout = {cmt}s\n\
             milter_content_timeout = {cot}s\n",
            spool = self.spool.display(),
            data = data.display(),
            maillog = self.maillog.display(),
            dir = self.dir.display(),
            sink = self.sink_port,
            action = o.default_action,
            ct = o.connect_timeout,
            cmt = o.command_timeout,
            cot = o.content_timeout,
        );
        // a setting of `main_extra` replaces the base line of the same name
        // (Postfix would warn "overriding earlier entry" in every log line)
        let mut s: String = s
            .lines()
            .filter(|l| {
                let name = l.split_once(" =").map_or("", |(n, _)| n);
                !o.main_extra.iter().any(|(k, _)| k == name)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        for (k, v) in &o.main_extra {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s
    }

    /// `postconf -c ETC ARGS`.
    ///
    /// # Errors
    /// When postconf fails (its diagnostics are in the error).
    pub fn postconf(&self, args: &[&str]) -> Result<String> {
        let out = run_cmd(
            Command::new("postconf").arg("-c").arg(&self.etc).args(args),
            CMD_TIMEOUT,
        )?;
        if !out.status.success() {
            bail!(
                "postconf {args:?} failed: {}{}",
                describe(&out),
                self.tty_diagnostics("postconf", args)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `postfix -c ETC <verb>` (check, start, stop, reload).
    ///
    /// # Errors
    /// When it fails. Postfix prints fatal errors only on a tty, so on failure
    /// the command is re-run under `script(1)` to capture them.
    pub fn postfix_cmd(&self, verb: &str) -> Result<()> {
        let out = run_cmd(
            Command::new("postfix").arg("-c").arg(&self.etc).arg(verb),
            CMD_TIMEOUT,
        )?;
        if !out.status.success() {
            let again = if verb == "check" {
                self.tty_diagnostics("postfix", &[verb])
            } else {
                String::new()
            };
            bail!(
                "postfix -c {} {verb} failed: {}{again}\nmaillog:\n{}",
                self.etc.display(),
                describe(&out),
                tail(&self.maillog(), 30)
            );
        }
        Ok(())
    }

    fn tty_diagnostics(&self, prog: &str, args: &[&str]) -> String {
        let line = format!("{prog} -c {} {}", self.etc.display(), args.join(" "));
        match run_cmd(
            Command::new("script").args(["-qec", &line, "/dev/null"]),
            CMD_TIMEOUT,
        ) {
            Ok(o) => format!(
                "\n(on a tty: {})",
                String::from_utf8_lossy(&o.stdout).trim()
            ),
            Err(_) => String::new(),
        }
    }

    fn start_sink(&mut self) -> Result<()> {
        let out = File::create(&self.sink_out)?;
        let template = format!("{}/msg.", self.sink_dir.display());
        let mut cmd = Command::new("smtp-sink");
        cmd.args([
            "-c",
            "-u",
            "postfix",
            "-h",
            "sink.mbtest.example",
            "-d",
            &template,
        ])
        .arg(format!("127.0.0.1:{}", self.sink_port))
        .arg("256")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
        // SAFETY: only prctl between fork and exec (async-signal-safe); the
        // sink dies with the test process even if Drop never runs.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().context("spawn smtp-sink")?;
        self.sink = Some(child);
        let port = self.sink_port;
        if wait_for(Duration::from_secs(10), Duration::from_millis(25), || {
            port_listening(port).then_some(())
        })
        .is_none()
        {
            bail!(
                "smtp-sink did not listen on 127.0.0.1:{port}: {}",
                fs::read_to_string(&self.sink_out).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// `inet:127.0.0.1:<port>` is not needed by tests; this is the SMTP port.
    #[must_use]
    pub fn smtp_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Writes a message to a file in the instance dir (CRLF line ends).
    fn message_file(&self, message: &str) -> Result<PathBuf> {
        let n = MSG_SEQ.fetch_add(1, Ordering::Relaxed);
        let p = self.dir.join("run").join(format!("msg-{n}.eml"));
        fs::write(&p, crlf(message))?;
        Ok(p)
    }

    /// One SMTP transaction with swaks: `from` to every address in `to`,
    /// `message` as DATA (a full message: headers, blank line, body).
    ///
    /// # Panics
    /// When swaks cannot run or hangs past 120 s.
    #[must_use]
    pub fn send(&self, from: &str, to: &[&str], message: &str) -> SmtpResult {
        self.send_as(&SmtpClient::default(), from, to, message)
    }

    /// Like [`Postfix::send`], with the HELO name of `client` and, when it
    /// sets an XCLIENT address, `XCLIENT ADDR=... [NAME=...]` after the first
    /// EHLO (swaks then says EHLO again). XCLIENT needs
    /// `smtpd_authorized_xclient_hosts = 127.0.0.0/8` in the instance.
    ///
    /// # Panics
    /// When swaks cannot run or hangs past 120 s.
    #[must_use]
    pub fn send_as(
        &self,
        client: &SmtpClient,
        from: &str,
        to: &[&str],
        message: &str,
    ) -> SmtpResult {
        let file = self.message_file(message).expect("write message file");
        let mut cmd = Command::new("swaks");
        cmd.args(["--server", &self.smtp_addr(), "--helo", &client.helo]);
        if let Some(addr) = &client.xclient_addr {
            cmd.args(["--xclient-addr", addr]);
            if let Some(name) = &client.xclient_name {
                cmd.args(["--xclient-name", name]);
            }
        }
        cmd.args(["--from", from, "--to", &to.join(","), "--timeout", "90"])
            .arg("--data")
            .arg(format!("@{}", file.display()))
            .arg("--suppress-data");
        let out = run_cmd(&mut cmd, Duration::from_secs(120)).expect("run swaks");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        SmtpResult::parse_swaks(&text, out.status.code())
    }

    /// Injects a message with `sendmail -C ETC` (pickup → cleanup →
    /// `non_smtpd_milters`). Returns sendmail's output on success.
    ///
    /// # Errors
    /// When sendmail fails.
    pub fn sendmail(&self, from: &str, to: &[&str], message: &str) -> Result<()> {
        let mut cmd = Command::new("sendmail");
        cmd.arg("-C")
            .arg(&self.etc)
            .args(["-i", "-f", from, "--"])
            .args(to);
        let out = run_cmd_input(
            &mut cmd,
            Some(message.replace("\r\n", "\n").as_bytes()),
            CMD_TIMEOUT,
        )?;
        if !out.status.success() {
            bail!("sendmail failed: {}", describe(&out));
        }
        Ok(())
    }

    /// Every message smtp-sink has dumped so far, oldest first.
    #[must_use]
    pub fn delivered(&self) -> Vec<Delivered> {
        let mut v: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(&self.sink_dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("msg."))
                    .map(|e| {
                        (
                            e.metadata()
                                .and_then(|m| m.modified())
                                .unwrap_or(std::time::UNIX_EPOCH),
                            e.path(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v.into_iter()
            .map(|(_, path)| Delivered {
                raw: fs::read_to_string(&path).unwrap_or_default(),
                path,
            })
            .collect()
    }

    /// smtp-sink's running `mesg=` counter (messages it received a final `.` for).
    #[must_use]
    pub fn sink_messages(&self) -> u64 {
        let raw = fs::read(&self.sink_out).unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        text.rsplit(['\r', '\n'])
            .filter_map(|rec| rec.split_whitespace().find_map(|f| f.strip_prefix("mesg=")))
            .find_map(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until at least `n` messages reached smtp-sink (counter and dump
    /// files, and Postfix logged `status=sent`), then returns all of them.
    ///
    /// # Errors
    /// On timeout, with the queue and the maillog tail.
    pub fn wait_delivered(&self, n: usize, timeout: Duration) -> Result<Vec<Delivered>> {
        let got = wait_for(timeout, Duration::from_millis(100), || {
            let sent = self.maillog().matches("status=sent").count();
            let files = self.delivered();
            let ok = usize::try_from(self.sink_messages()).unwrap_or(0) >= n
                && files.len() >= n
                && sent >= n;
            ok.then_some(files)
        });
        got.ok_or_else(|| {
            anyhow!(
                "expected {n} delivered message(s) within {timeout:?}, have {} (sink counter {}); \
                 queue: {:?}\nmaillog:\n{}",
                self.delivered().len(),
                self.sink_messages(),
                self.queue().unwrap_or_default(),
                tail(&self.maillog(), 40)
            )
        })
    }

    /// Entries of `postqueue -c ETC -j` (one JSON object per queued message).
    ///
    /// # Errors
    /// When postqueue fails or prints something else than JSON lines.
    pub fn queue(&self) -> Result<Vec<serde_json::Value>> {
        let out = run_cmd(
            Command::new("postqueue").arg("-c").arg(&self.etc).arg("-j"),
            CMD_TIMEOUT,
        )?;
        if !out.status.success() {
            bail!("postqueue -j failed: {}", describe(&out));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("postqueue -j line {l:?}")))
            .collect()
    }

    fn queue_ids(&self, queue_name: &str) -> Vec<String> {
        self.queue()
            .unwrap_or_default()
            .iter()
            .filter(|e| e["queue_name"] == queue_name)
            .filter_map(|e| e["queue_id"].as_str().map(str::to_string))
            .collect()
    }

    /// Queue ids in the hold queue.
    #[must_use]
    pub fn hold_queue(&self) -> Vec<String> {
        self.queue_ids("hold")
    }

    /// Messages in the deferred queue.
    #[must_use]
    pub fn deferred_count(&self) -> usize {
        self.queue_ids("deferred").len()
    }

    /// Files in `maildrop` (sendmail injections pickup has not taken yet),
    /// counted on disk: showq may not list files pickup could not process.
    #[must_use]
    pub fn maildrop_count(&self) -> usize {
        fs::read_dir(self.spool.join("maildrop"))
            .map(|rd| rd.filter_map(Result::ok).count())
            .unwrap_or(0)
    }

    /// Files in every queue directory (maildrop, incoming, active, deferred, hold).
    #[must_use]
    pub fn queue_files(&self) -> usize {
        fn walk(p: &Path) -> usize {
            fs::read_dir(p)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| {
                            let p = e.path();
                            if p.is_dir() {
                                walk(&p)
                            } else {
                                1
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        ["maildrop", "incoming", "active", "deferred", "hold"]
            .iter()
            .map(|q| walk(&self.spool.join(q)))
            .sum()
    }

    /// Waits until no message is in maildrop/incoming/active/deferred (hold
    /// is allowed), so "nothing delivered" checks are not premature.
    ///
    /// # Errors
    /// On timeout.
    pub fn wait_queue_settled(&self, timeout: Duration) -> Result<()> {
        wait_for(timeout, Duration::from_millis(100), || {
            let busy: usize = ["maildrop", "incoming", "active", "deferred"]
                .iter()
                .map(|q| {
                    fs::read_dir(self.spool.join(q))
                        .map(|rd| {
                            rd.filter_map(Result::ok)
                                .map(|e| {
                                    if e.path().is_dir() {
                                        fs::read_dir(e.path()).map(Iterator::count).unwrap_or(0)
                                    } else {
                                        1
                                    }
                                })
                                .sum::<usize>()
                        })
                        .unwrap_or(0)
                })
                .sum();
            (busy == 0).then_some(())
        })
        .ok_or_else(|| {
            anyhow!(
                "queue not settled within {timeout:?}: {:?}",
                self.queue().unwrap_or_default()
            )
        })
    }

    /// `postqueue -c ETC -f`: retry deferred mail now.
    ///
    /// # Errors
    /// When postqueue fails.
    pub fn flush(&self) -> Result<()> {
        let out = run_cmd(
            Command::new("postqueue").arg("-c").arg(&self.etc).arg("-f"),
            CMD_TIMEOUT,
        )?;
        if !out.status.success() {
            bail!("postqueue -f failed: {}", describe(&out));
        }
        Ok(())
    }

    /// `postkick -c ETC public pickup W`: make pickup scan maildrop now
    /// instead of at its 60 s wakeup.
    ///
    /// # Errors
    /// When postkick fails.
    pub fn kick_pickup(&self) -> Result<()> {
        let out = run_cmd(
            Command::new("postkick")
                .arg("-c")
                .arg(&self.etc)
                .args(["public", "pickup", "W"]),
            CMD_TIMEOUT,
        )?;
        if !out.status.success() {
            bail!("postkick pickup failed: {}", describe(&out));
        }
        Ok(())
    }

    /// The instance's maillog so far.
    #[must_use]
    pub fn maillog(&self) -> String {
        fs::read_to_string(&self.maillog).unwrap_or_default()
    }

    /// Waits until the maillog contains `needle`.
    ///
    /// # Errors
    /// On timeout, with the log tail.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        wait_for(timeout, Duration::from_millis(100), || {
            let log = self.maillog();
            log.contains(needle).then_some(log)
        })
        .ok_or_else(|| {
            anyhow!(
                "maillog has no {needle:?} within {timeout:?}:\n{}",
                tail(&self.maillog(), 40)
            )
        })
    }

    /// `postconf -e` settings followed by `postfix reload`, then a pause for
    /// the asynchronous reload to take effect.
    ///
    /// # Errors
    /// When postconf or reload fail.
    pub fn set(&self, kv: &[&str]) -> Result<()> {
        let mut args = vec!["-e"];
        args.extend_from_slice(kv);
        self.postconf(&args)?;
        self.postfix_cmd("reload")?;
        thread::sleep(Duration::from_millis(1500));
        Ok(())
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- postfix {} maillog, last lines:\n{}",
                self.maillog.display(),
                tail(&self.maillog(), 60)
            );
        }
        let stop = run_cmd(
            Command::new("postfix").arg("-c").arg(&self.etc).arg("stop"),
            CMD_TIMEOUT,
        );
        if let Some(pid) = self.master_pid {
            let deadline = Instant::now() + Duration::from_secs(15);
            while pid_alive(pid) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            let is_master = fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains("master"));
            if pid_alive(pid) && is_master {
                eprintln!("postfix master {pid} still alive after stop ({stop:?}); SIGKILL");
                signal(pid, libc::SIGKILL);
            }
        }
        if let Some(mut c) = self.sink.take() {
            if matches!(c.try_wait(), Ok(None)) {
                signal(c.id(), libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// Converts `\n` line ends to `\r\n` (leaves existing `\r\n` alone).
#[must_use]
pub fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// A small test message with a unique marker line in the body.
#[must_use]
pub fn message(from: &str, to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: <{from}>\nTo: <{to}>\nSubject: {subject}\nMessage-ID: <{id}.{pid}@client.mbtest.example>\n\
         Date: Thu, 01 Jan 2026 00:00:00 +0000\n\n{body}\n",
        id = subject.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
        pid = std::process::id()
    )
}
