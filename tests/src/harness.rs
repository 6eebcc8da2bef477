//! Process plumbing shared by every end-to-end test: unique temp dirs, free
//! ports, bounded command runs, and the [`Mbd`] guard around a real `mbd`.
//!
//! The binaries come from the workspace target directory
//! (`$CARGO_TARGET_DIR` or `<workspace>/target`, profile `debug`): build them
//! first with `cargo build --workspace --bins` (`.ci/run` does).

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};

/// How long `mbd` may take to answer `mbctl status --json` after spawn.
pub const MBD_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `mbd` gets after SIGTERM before SIGKILL.
pub const MBD_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound for one helper command (mbctl, postconf, ...).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------ paths

/// The workspace root (parent of this crate).
#[must_use]
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// The cargo target directory the workspace builds into.
#[must_use]
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Path of a workspace binary (`mbd`, `mbctl`) in the debug profile.
///
/// # Panics
/// When the binary is missing: the test command must build it first.
#[must_use]
pub fn bin(name: &str) -> PathBuf {
    let p = target_dir().join("debug").join(name);
    assert!(
        p.is_file(),
        "{} not found: build the workspace binaries first \
         (`cargo build --workspace --bins`, as .ci/run does)",
        p.display()
    );
    p
}

/// Fails with a clear message when an external tool is missing. The tests
/// need real Postfix and miltertest; CI installs them, so missing is an error.
///
/// # Panics
/// When `tool` is not found in `PATH` nor in `/usr/sbin`, `/usr/bin`.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "required tool `{tool}` is missing: install the Debian package `{package}` \
         (`apt-get install -y postfix miltertest swaks`, or run .ci/run)"
    );
}

/// True when running as root (the Postfix harness needs it).
#[must_use]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

// ------------------------------------------------------------------ limits

/// Raises the soft RLIMIT_NOFILE to at least `want` (bounded by the hard
/// limit) and RLIMIT_MEMLOCK to its hard limit. Children spawned afterwards
/// (mbd) inherit both. Returns the soft NOFILE limit now in force.
pub fn raise_limits(want_nofile: u64) -> u64 {
    set_soft_to(libc::RLIMIT_MEMLOCK, u64::MAX);
    set_soft_to(libc::RLIMIT_NOFILE, want_nofile)
}

fn set_soft_to(resource: libc::__rlimit_resource_t, want: u64) -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit struct.
    if unsafe { libc::getrlimit(resource, &mut rl) } != 0 {
        return 0;
    }
    let target = want.min(rl.rlim_max);
    if target > rl.rlim_cur {
        let new = libc::rlimit {
            rlim_cur: target,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: `new` is a valid rlimit; a failure only leaves the old limit.
        if unsafe { libc::setrlimit(resource, &new) } == 0 {
            return target;
        }
    }
    rl.rlim_cur
}

// ------------------------------------------------------------------ temp dirs

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique directory under `/tmp`, removed on drop unless the test failed
/// (then it is kept and its path printed, with the logs inside).
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates `/tmp/mbt-<name>-<pid>-<n>` with mode 0755 (user `postfix`
    /// must traverse it to reach sockets inside).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn new(name: &str) -> Result<Self> {
        let short: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(20)
            .collect();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(format!("/tmp/mbt-{short}-{}-{n}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path).ok();
        }
        fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        Ok(Self { path })
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    #[must_use]
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Creates (mode 0755) and returns a subdirectory.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn subdir(&self, rel: &str) -> Result<PathBuf> {
        let p = self.path.join(rel);
        fs::create_dir_all(&p)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
        Ok(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "test failed: keeping {} for inspection",
                self.path.display()
            );
        } else {
            fs::remove_dir_all(&self.path).ok();
        }
    }
}

// ------------------------------------------------------------------ ports

/// A TCP port on 127.0.0.1 reserved for this test process. Ports come from
/// 61000..=64999: above Linux's default ephemeral range (32768..=60999), so
/// outgoing connections never take them, and away from the 2xxxx ports the
/// shared pf-harness uses. Each is guarded by an `flock` on
/// `/tmp/mbtest-ports/<port>.lock`, released automatically when the process
/// ends: parallel test processes never pick the same port.
#[derive(Debug)]
pub struct PortLease {
    /// The port.
    pub port: u16,
    _lock: File,
}

const PORT_FIRST: u16 = 61_000;
const PORT_LAST: u16 = 64_999;

/// Reserves a free port.
///
/// # Errors
/// When no port in the range is free.
pub fn lease_port() -> Result<PortLease> {
    let dir = Path::new("/tmp/mbtest-ports");
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o1777)).ok();
    let (first, last) = port_range();
    let span = u32::from(last - first) + 1;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(nanos)
        .wrapping_add(SEQ.fetch_add(1, Ordering::Relaxed).wrapping_mul(104_729));
    for i in 0..span {
        let port = first + u16::try_from((seed.wrapping_add(i)) % span).unwrap_or(0);
        let lock_path = dir.join(format!("{port}.lock"));
        let Ok(file) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
        else {
            continue;
        };
        // SAFETY: the fd is valid for the lifetime of `file`.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && !port_listening(port) {
            return Ok(PortLease { port, _lock: file });
        }
    }
    bail!("no free TCP port in {first}..={last}")
}

/// [`PORT_FIRST`]..=[`PORT_LAST`], unless this machine's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`) overlaps it: then the 4,000
/// ports just below the ephemeral range.
fn port_range() -> (u16, u16) {
    let eph = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().filter_map(|n| n.parse::<u16>().ok());
            Some((it.next()?, it.next()?))
        });
    match eph {
        Some((lo, hi)) if lo <= PORT_LAST && hi >= PORT_FIRST && lo > 5_024 => (lo - 4_000, lo - 1),
        _ => (PORT_FIRST, PORT_LAST),
    }
}

/// True if something LISTENs on 127.0.0.1:port or 0.0.0.0:port. Reads
/// `/proc/net/tcp` so that probing never opens a (logged) SMTP session.
#[must_use]
pub fn port_listening(port: u16) -> bool {
    let want = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    let Ok(text) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[3] == "0A" && want.iter().any(|w| w == f[1])
    })
}

/// Polls `cond` every `step` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    timeout: Duration,
    step: Duration,
    mut cond: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(step);
    }
}

// ------------------------------------------------------------------ commands

/// Runs a command with a time bound, capturing stdout and stderr. On timeout
/// the child (and only it, by pid) is killed and an error returned.
///
/// # Errors
/// When the command cannot be spawned or does not finish in time.
pub fn run_cmd(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    run_cmd_input(cmd, None, timeout)
}

/// Like [`run_cmd`], feeding `input` on stdin.
///
/// # Errors
/// When the command cannot be spawned or does not finish in time.
pub fn run_cmd_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Result<Output> {
    let desc = format!("{cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().with_context(|| format!("spawn {desc}"))?;
    if let Some(data) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let data = data.to_vec();
        thread::spawn(move || {
            use std::io::Write;
            stdin.write_all(&data).ok();
        });
    }
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).ok();
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).ok();
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            bail!("{desc} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Text of an output, for assertion messages.
#[must_use]
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `mbctl ARGS` (bounded by [`CMD_TIMEOUT`]).
///
/// # Panics
/// When mbctl cannot be run at all or hangs.
#[must_use]
pub fn mbctl(args: &[&str]) -> Output {
    run_cmd(Command::new(bin("mbctl")).args(args), CMD_TIMEOUT)
        .unwrap_or_else(|e| panic!("mbctl {args:?}: {e:#}"))
}

/// Sends `sig` to `pid`. Only ever called with pids this crate spawned.
pub fn signal(pid: u32, sig: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: plain syscall; the pid is one of our own children.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// True if `pid` exists and is not a zombie.
#[must_use]
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// VmRSS of a process in KiB, from `/proc/<pid>/status`.
#[must_use]
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Last `n` lines of a text.
#[must_use]
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ------------------------------------------------------------------ mbd

/// What goes into an mbd test config. [`MbdConfig::render`] writes the
/// `[daemon]`, `[shards]` and `[milter]` tables; `policy` is appended verbatim
/// (it holds `[policy]` and any `[[policy.sender]]` … tables).
#[derive(Debug, Clone)]
pub struct MbdConfig {
    /// `shards.count`.
    pub shards: u16,
    /// `milter.socket_mode` (tests use 0777 so user postfix can connect).
    pub socket_mode: String,
    /// `milter.tcp` listeners (`127.0.0.1:port`).
    pub tcp: Vec<String>,
    /// Extra `key = value` lines inside `[milter]`.
    pub milter_extra: String,
    /// Extra lines inside `[daemon]`.
    pub daemon_extra: String,
    /// Everything after the fixed tables (`[policy]`, rules, ...).
    pub policy: String,
}

impl Default for MbdConfig {
    fn default() -> Self {
        Self {
            shards: 2,
            socket_mode: "0777".into(),
            tcp: Vec::new(),
            milter_extra: String::new(),
            daemon_extra: String::new(),
            policy: String::new(),
        }
    }
}

impl MbdConfig {
    /// A config with this `[policy]` part and defaults for the rest.
    #[must_use]
    pub fn with_policy(policy: &str) -> Self {
        Self {
            policy: policy.to_string(),
            ..Self::default()
        }
    }

    /// The TOML text for a daemon whose state lives in `state_dir`.
    #[must_use]
    pub fn render(&self, state_dir: &Path) -> String {
        let tcp = if self.tcp.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = self.tcp.iter().map(|a| format!("\"{a}\"")).collect();
            format!("tcp = [{}]\n", list.join(", "))
        };
        format!(
            "# written by mb-tests\n[daemon]\nstate_dir = \"{state}\"\n{dx}\n\
             [shards]\ncount = {shards}\n\n\
             [milter]\nsocket = \"{state}/mb-milter.sock\"\nsocket_mode = \"{mode}\"\n{tcp}{mx}\n\
             {policy}\n",
            state = state_dir.display(),
            dx = self.daemon_extra,
            shards = self.shards,
            mode = self.socket_mode,
            mx = self.milter_extra,
            policy = self.policy,
        )
    }
}

/// A running `mbd`, stopped on drop (SIGTERM, then SIGKILL after 10 s; only
/// its own pid). Its stderr goes to `<dir>/mbd-stderr-<n>.log`, printed on
/// test failure.
#[derive(Debug)]
pub struct Mbd {
    child: Option<Child>,
    /// Process id.
    pub pid: u32,
    /// Directory holding config, state and logs.
    pub dir: PathBuf,
    /// The config file passed with `--config`.
    pub config_path: PathBuf,
    /// `daemon.state_dir`.
    pub state_dir: PathBuf,
    /// The unix milter socket.
    pub socket: PathBuf,
    /// The control socket.
    pub ctl_socket: PathBuf,
    /// Where stderr is captured.
    pub stderr_path: PathBuf,
}

static SPAWNS: AtomicU32 = AtomicU32::new(0);

impl Mbd {
    /// Writes `cfg` to `<dir>/mbd.toml` (state in `<dir>/state`), spawns mbd
    /// and waits until it is ready.
    ///
    /// # Errors
    /// When mbd exits or is not ready within [`MBD_READY_TIMEOUT`].
    pub fn start(dir: &Path, cfg: &MbdConfig) -> Result<Self> {
        let state = dir.join("state");
        fs::create_dir_all(&state)?;
        fs::set_permissions(&state, fs::Permissions::from_mode(0o755))?;
        let config_path = dir.join("mbd.toml");
        fs::write(&config_path, cfg.render(&state))?;
        Self::start_with_config(dir, &config_path, &state)
    }

    /// Spawns mbd on an existing config file whose `state_dir` is `state_dir`,
    /// and waits until it is ready.
    ///
    /// # Errors
    /// When mbd exits or is not ready in time.
    pub fn start_with_config(dir: &Path, config_path: &Path, state_dir: &Path) -> Result<Self> {
        let mut m = Self::spawn(dir, config_path, state_dir)?;
        m.wait_ready(MBD_READY_TIMEOUT)?;
        Ok(m)
    }

    /// Spawns mbd without waiting for readiness.
    ///
    /// # Errors
    /// When the process cannot be spawned.
    pub fn spawn(dir: &Path, config_path: &Path, state_dir: &Path) -> Result<Self> {
        raise_limits(65_536);
        let n = SPAWNS.fetch_add(1, Ordering::Relaxed);
        let stderr_path = dir.join(format!("mbd-stderr-{n}.log"));
        let err = File::create(&stderr_path)?;
        let out = err.try_clone()?;
        let mut cmd = Command::new(bin("mbd"));
        cmd.arg("--config")
            .arg(config_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: the closure runs in the forked child before exec and only
        // calls prctl, which is async-signal-safe. It makes the kernel kill mbd
        // if the test process dies without running our Drop.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().context("spawn mbd")?;
        Ok(Self {
            pid: child.id(),
            child: Some(child),
            dir: dir.to_path_buf(),
            config_path: config_path.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            socket: state_dir.join("mb-milter.sock"),
            ctl_socket: state_dir.join("mbd.ctl"),
            stderr_path,
        })
    }

    /// Waits until `mbctl status --json` succeeds and the milter socket exists.
    ///
    /// # Errors
    /// When mbd exits first or the time runs out; the error holds its stderr.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            if let Some(st) = self.try_wait()? {
                bail!(
                    "mbd exited during startup ({st}); stderr:\n{}",
                    tail(&self.stderr(), 60)
                );
            }
            let ctl = self.ctl_socket.display().to_string();
            match run_cmd(
                Command::new(bin("mbctl")).args(["--socket", &ctl, "status", "--json"]),
                Duration::from_secs(5),
            ) {
                Ok(out)
                    if out.status.success()
                        && serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok()
                        && self.socket.exists() =>
                {
                    return Ok(());
                }
                Ok(out) => last = describe(&out),
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() >= deadline {
                bail!(
                    "mbd not ready within {timeout:?} (last mbctl status: {last}); stderr:\n{}",
                    tail(&self.stderr(), 60)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `unix:<socket>` as Postfix's `smtpd_milters` wants it.
    #[must_use]
    pub fn milter_spec(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Runs `mbctl --socket <ctl> ARGS`.
    #[must_use]
    pub fn ctl(&self, args: &[&str]) -> Output {
        let ctl = self.ctl_socket.display().to_string();
        let mut all = vec!["--socket", ctl.as_str()];
        all.extend_from_slice(args);
        mbctl(&all)
    }

    /// `mbctl status --json`, parsed.
    ///
    /// # Errors
    /// When mbctl fails or prints something else than JSON.
    pub fn status(&self) -> Result<serde_json::Value> {
        let out = self.ctl(&["status", "--json"]);
        if !out.status.success() {
            bail!("mbctl status --json failed: {}", describe(&out));
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("mbctl status --json printed: {}", describe(&out)))
    }

    /// `mbctl shard status --json`, as the list of per-shard objects.
    ///
    /// # Errors
    /// When mbctl fails or the output holds no shard list.
    pub fn shard_status(&self) -> Result<Vec<serde_json::Value>> {
        let out = self.ctl(&["shard", "status", "--json"]);
        if !out.status.success() {
            bail!("mbctl shard status --json failed: {}", describe(&out));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("mbctl shard status --json printed: {}", describe(&out)))?;
        shard_list(&v).ok_or_else(|| anyhow!("no shard list in {v}"))
    }

    /// Sum of a numeric field over all shards.
    ///
    /// # Errors
    /// As [`Mbd::shard_status`]; also when a shard lacks the field.
    pub fn shard_sum(&self, field: &str) -> Result<u64> {
        let mut sum = 0;
        for s in self.shard_status()? {
            sum += s
                .get(field)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| anyhow!("shard status lacks numeric `{field}`: {s}"))?;
        }
        Ok(sum)
    }

    /// Sends SIGHUP (config reload).
    pub fn hup(&self) {
        assert!(signal(self.pid, libc::SIGHUP), "kill -HUP {}", self.pid);
    }

    /// SIGKILL, then reap. The sockets stay behind (stale), like after a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// SIGTERM and wait up to `timeout`; SIGKILL after that. Returns the exit
    /// status, and whether it ended on its own.
    ///
    /// # Errors
    /// When waiting fails.
    pub fn terminate(&mut self, timeout: Duration) -> Result<(ExitStatus, bool)> {
        let Some(mut c) = self.child.take() else {
            bail!("mbd already reaped");
        };
        if let Some(st) = c.try_wait()? {
            return Ok((st, true));
        }
        signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok((st, true));
            }
            if Instant::now() >= deadline {
                c.kill().ok();
                return Ok((c.wait()?, false));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for mbd to exit on its own (no signal sent).
    ///
    /// # Errors
    /// When waiting fails.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(Some(st));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Non-blocking check whether mbd exited.
    ///
    /// # Errors
    /// When waitpid fails.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => bail!("mbd already reaped"),
        }
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// VmRSS in KiB.
    #[must_use]
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }

    /// Everything mbd wrote to stderr so far.
    #[must_use]
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

/// Finds the per-shard list in `mbctl shard status --json` output: a bare
/// array, or an object holding it under `shards` (possibly inside `ok`).
#[must_use]
pub fn shard_list(v: &serde_json::Value) -> Option<Vec<serde_json::Value>> {
    match v {
        serde_json::Value::Array(a) => Some(a.clone()),
        serde_json::Value::Object(o) => o
            .get("shards")
            .and_then(shard_list)
            .or_else(|| o.get("ok").and_then(shard_list)),
        _ => None,
    }
}

impl Drop for Mbd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ok = self.terminate(MBD_STOP_TIMEOUT);
            if let Ok((_, false)) = ok {
                eprintln!(
                    "mbd pid {} ignored SIGTERM for {MBD_STOP_TIMEOUT:?}; killed",
                    self.pid
                );
            }
        }
        if thread::panicking() {
            eprintln!(
                "--- mbd pid {} stderr ({}), last lines:\n{}",
                self.pid,
                self.stderr_path.display(),
                tail(&self.stderr(), 80)
            );
        }
    }
}

/// Any helper process a test starts (a reference milter, ...): killed on
/// drop (SIGTERM, SIGKILL after 5 s; its own pid only). Output goes to a log
/// file printed on test failure.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` with stdout and stderr to `log`.
    ///
    /// # Errors
    /// When it cannot be spawned.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Self> {
        let f = File::create(log)?;
        cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
        // SAFETY: only prctl between fork and exec (async-signal-safe).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("spawn {name}"))?;
        Ok(Self {
            child,
            name: name.to_string(),
            log: log.to_path_buf(),
        })
    }

    /// Process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `path` exists, failing early if the process exits.
    ///
    /// # Errors
    /// When the process exits or `timeout` passes first.
    pub fn wait_path(&mut self, path: &Path, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !path.exists() {
            if let Some(st) = self.child.try_wait()? {
                bail!("{} exited ({st}): {}", self.name, self.log_text());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not create {} in {timeout:?}: {}",
                    self.name,
                    path.display(),
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The log so far.
    #[must_use]
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().ok();
        self.child.wait().ok();
        if thread::panicking() {
            eprintln!("--- {} log:\n{}", self.name, tail(&self.log_text(), 40));
        }
    }
}
