//! The few OS calls the benchmarks need: CPU time of this process
//! (`getrusage`), CPU time of another process (`/proc/PID/stat`), and pinning
//! the calling thread to one CPU (`sched_setaffinity`).
//!
//! This is the only module of mb-bench with `unsafe`; each block names its
//! invariant.
//!
//! `/proc/PID/stat` layout (proc(5)): `pid (comm) state ppid ...`, where field 14
//! is `utime` and field 15 `stime`, in clock ticks (`sysconf(_SC_CLK_TCK)`,
//! usually 100 per second, so a reading is good to 10 ms). `comm` may hold
//! spaces and parentheses, so fields are counted after the *last* `)`.

use std::io;
use std::time::Duration;

/// User + system CPU time consumed so far by this process (all threads).
///
/// # Errors
/// When `getrusage` fails (it cannot for `RUSAGE_SELF` on Linux).
pub fn self_cpu() -> io::Result<Duration> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` points to writable memory of the size of `struct rusage`;
    // getrusage only writes that struct and RUSAGE_SELF is a valid selector.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getrusage returned 0, so it initialised the whole struct (and it
    // was zeroed before, so every byte is initialised either way).
    let ru = unsafe { ru.assume_init() };
    debug_assert!(ru.ru_utime.tv_usec >= 0 && ru.ru_stime.tv_usec >= 0);
    Ok(timeval(ru.ru_utime) + timeval(ru.ru_stime))
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(tv.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(tv.tv_usec).unwrap_or(0))
}

/// Clock ticks per second for `/proc/PID/stat` times.
#[must_use]
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Parses `utime + stime` (in ticks) from the text of `/proc/PID/stat`.
#[must_use]
pub fn parse_proc_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after `comm` start at field 3 (state); utime is field 14.
    let mut fields = after.split_ascii_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// User + system CPU time of process `pid` (all its threads, dead ones included).
///
/// # Errors
/// When `/proc/PID/stat` cannot be read or parsed (no such process?).
pub fn process_cpu(pid: u32) -> io::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path)?;
    let ticks = parse_proc_stat_ticks(&text).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {path}"))
    })?;
    let hz = clock_ticks_per_sec();
    Ok(Duration::from_secs(ticks / hz) + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz))
}

/// Pins the calling thread to `cpu`.
///
/// # Errors
/// When the CPU does not exist or is not in the allowed set.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let bits = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if cpu >= bits {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} out of range"),
        ));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set (what CPU_ZERO produces).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    debug_assert!(cpu < bits);
    // SAFETY: CPU_SET indexes the bit array without a bounds check; `cpu` is
    // below the set's bit count (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid, initialised cpu_set_t and the size passed is
    // its size; pid 0 means the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_odd_comm() {
        let line = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 3 0 \
                    12345 1000000 200 18446744073709551615";
        assert_eq!(parse_proc_stat_ticks(line), Some(325));
        assert_eq!(parse_proc_stat_ticks("garbage"), None);
    }

    #[test]
    fn reads_own_cpu_both_ways() {
        let a = self_cpu().unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = self_cpu().unwrap();
        assert!(b >= a);
        assert!(process_cpu(std::process::id()).is_ok());
        assert!(clock_ticks_per_sec() > 0);
    }
}
