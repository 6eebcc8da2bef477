//! Where things run and live: the CPU plan, the state directory and socket
//! paths, and the boot checks on process limits.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mb_engine::config::Config;

/// Minimum RLIMIT_MEMLOCK glommio needs to start an executor.
const MEMLOCK_BYTES_MIN: u64 = 512 * 1024;

/// The production state directory (sockets live here).
pub const RUN_DIR: &str = "/run/mailborder";

/// Resolved paths.
#[derive(Debug, Clone)]
pub struct Paths {
    /// State directory.
    pub state_dir: PathBuf,
    /// Milter unix socket, if enabled.
    pub milter_socket: Option<PathBuf>,
    /// Policy delegation unix socket, if enabled.
    pub policyd_socket: Option<PathBuf>,
    /// Control socket for `mbctl`.
    pub control_socket: PathBuf,
}

/// Resolves the state directory (`--state-dir`, then `daemon.state_dir`, then
/// `/run/mailborder` when writable, then `$XDG_RUNTIME_DIR/mailborder`, then
/// `./state`), creates it, and derives the socket paths.
pub fn resolve_paths(config: &Config, state_dir_override: Option<&Path>) -> Result<Paths> {
    let state_dir = match state_dir_override.or(config.daemon.state_dir.as_deref()) {
        Some(dir) => {
            create_dir(dir)
                .with_context(|| format!("cannot create state directory {}", dir.display()))?;
            dir.to_path_buf()
        }
        None => default_state_dir()?,
    };
    let milter_socket = if config.milter.unix_socket_disabled {
        None
    } else {
        Some(
            config
                .milter
                .unix_socket
                .clone()
                .unwrap_or_else(|| state_dir.join("mb-milter.sock")),
        )
    };
    let policyd_socket = if config.eval.policyd_socket_disabled {
        None
    } else {
        Some(
            config
                .eval
                .policyd_socket
                .clone()
                .unwrap_or_else(|| state_dir.join("mb-policy.sock")),
        )
    };
    let control_socket = config
        .daemon
        .control_socket
        .clone()
        .unwrap_or_else(|| state_dir.join("mbd.ctl"));
    Ok(Paths {
        state_dir,
        milter_socket,
        policyd_socket,
        control_socket,
    })
}

fn default_state_dir() -> Result<PathBuf> {
    let mut candidates = vec![PathBuf::from(RUN_DIR)];
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(PathBuf::from(xdg).join("mailborder"));
    }
    candidates.push(PathBuf::from("state"));
    let mut errors = Vec::new();
    for dir in &candidates {
        match create_dir(dir).and_then(|()| writable(dir)) {
            Ok(()) => return Ok(fs::canonicalize(dir).unwrap_or_else(|_| dir.clone())),
            Err(e) => errors.push(format!("{}: {e}", dir.display())),
        }
    }
    bail!(
        "no writable state directory ({}); set daemon.state_dir or --state-dir",
        errors.join("; ")
    )
}

fn create_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    // The MTA's user must traverse the directory to reach the milter socket;
    // the sockets' own modes restrict who may connect.
    let mut perms = fs::metadata(dir)?.permissions();
    if perms.mode() & 0o111 != 0o111 {
        perms.set_mode(perms.mode() | 0o755);
        fs::set_permissions(dir, perms)?;
    }
    Ok(())
}

fn writable(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".mbd-probe-{}", std::process::id()));
    fs::write(&probe, b"")?;
    fs::remove_file(&probe)
}

/// The CPUs shards run on, one per shard, in shard order.
pub fn cpu_plan(config: &Config) -> Result<Vec<usize>> {
    let allowed = allowed_cpus()?;
    let cpus = if config.shards.cpus.is_empty() {
        allowed.clone()
    } else {
        for cpu in &config.shards.cpus {
            if !allowed.contains(cpu) {
                bail!(
                    "shards.cpus names CPU {cpu}, but this process may only run on {allowed:?}; \
                     fix shards.cpus"
                );
            }
        }
        config.shards.cpus.clone()
    };
    let count = match usize::from(config.shards.count) {
        0 => cpus.len(),
        n => n,
    };
    if count > cpus.len() {
        bail!(
            "shards.count = {count} but only {} CPUs are available ({cpus:?}); \
             lower shards.count or list more shards.cpus",
            cpus.len()
        );
    }
    Ok(cpus[..count].to_vec())
}

/// CPUs in this process's affinity mask.
fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: `set` is a plain-old-data bit set that the kernel fills;
    // sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes into it.
    let (rc, set) = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        (rc, set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("sched_getaffinity");
    }
    // SAFETY: CPU_ISSET only reads the bit set filled above; i < CPU_SETSIZE.
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect();
    if cpus.is_empty() {
        bail!("the process affinity mask is empty");
    }
    Ok(cpus)
}

/// Raises RLIMIT_MEMLOCK and RLIMIT_NOFILE soft limits to their hard limits
/// and checks memlock is enough for glommio.
pub fn raise_limits() -> Result<Limits> {
    let memlock = raise(libc::RLIMIT_MEMLOCK)?;
    let nofile = raise(libc::RLIMIT_NOFILE)?;
    if memlock < MEMLOCK_BYTES_MIN {
        bail!(
            "RLIMIT_MEMLOCK is {memlock} bytes; glommio needs at least {MEMLOCK_BYTES_MIN} \
             (set LimitMEMLOCK=infinity in the systemd unit, or `ulimit -l unlimited`)"
        );
    }
    Ok(Limits { memlock, nofile })
}

/// Process limits after raising.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// RLIMIT_MEMLOCK soft limit, bytes.
    pub memlock: u64,
    /// RLIMIT_NOFILE soft limit.
    pub nofile: u64,
}

fn raise(resource: libc::__rlimit_resource_t) -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid pointer given.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return Err(io::Error::last_os_error()).context("getrlimit");
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one `rlimit` from the valid pointer given.
        if unsafe { libc::setrlimit(resource, &raised) } == 0 {
            lim = raised;
        }
    }
    Ok(lim.rlim_cur)
}

/// Resident set size of this process in bytes (0 if /proc is unreadable).
pub fn rss_bytes() -> u64 {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Sets a socket's mode and (optionally) group.
pub fn set_socket_access(path: &Path, mode: u32, gid: Option<u32>) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {:o} {}", mode, path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("cannot chgrp {gid} {}", path.display()))?;
    }
    Ok(())
}

/// Looks up a group id by name.
pub fn group_id(name: &str) -> Result<u32> {
    let group = fs::read_to_string("/etc/group").context("cannot read /etc/group")?;
    group
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(n, _)| *n == name)
        .and_then(|(_, gid)| gid.parse().ok())
        .with_context(|| format!("milter.socket_group: no group named `{name}` in /etc/group"))
}

/// Makes `path` free for a new unix socket: a stale socket (nobody accepting)
/// is removed; a live one, or a file that is not a socket, is an error.
pub fn claim_socket_path(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; remove it or choose another path",
            path.display()
        );
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!(
            "{} is in use by a running process (another mbd?)",
            path.display()
        );
    }
    fs::remove_file(path).with_context(|| format!("cannot remove stale socket {}", path.display()))
}

/// The machine's host name (`/proc/sys/kernel/hostname`), lower-case;
/// `localhost` when it cannot be read or is not a usable name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| "localhost".to_owned())
}
