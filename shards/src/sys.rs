//! The shard's only `unsafe` code: thin wrappers over the socket and epoll
//! system calls the connection I/O path makes directly (see `io.rs` for why
//! it bypasses glommio's per-read io_uring polls).
//!
//! Every function takes either a borrowed fd (`BorrowedFd`, so the caller
//! proves it is open for the duration of the call) or creates an `OwnedFd`,
//! so no fd here can be closed twice or used after close.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// `shutdown(fd, SHUT_RDWR)`: a pending or later read returns end of file
/// and a write fails, so the task owning the connection ends it.
///
/// Takes a raw fd because the sweeper holds its connections' fds as integers;
/// its invariant (a slot is freed before its socket is closed) makes sure the
/// fd is still the connection's. A stale fd could not corrupt memory, only
/// shut down the wrong socket.
pub fn shutdown(fd: RawFd) -> io::Result<()> {
    debug_assert!(fd >= 0);
    // SAFETY: shutdown takes no pointers; see above for why `fd` is ours.
    check(unsafe { libc::shutdown(fd, libc::SHUT_RDWR) }).map(drop)
}

/// One non-blocking `accept4`: `Ok(None)` when the backlog is empty. The new
/// socket is non-blocking and close-on-exec.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    loop {
        // SAFETY: `listener` is open; null address pointers are allowed by
        // accept4 and mean "do not report the peer address".
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: accept4 just returned this descriptor; nothing else owns
            // it.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // The peer gave up before we accepted: try the next one.
            Some(libc::ECONNABORTED) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Non-blocking `recv` into `buf`. `ErrorKind::WouldBlock` when no byte is
/// waiting; `Ok(0)` at end of file.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a live, exclusively borrowed slice of `buf.len()`
        // writable bytes, and `fd` is open.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match check_size(n) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Non-blocking `send` of `buf` (no SIGPIPE). `ErrorKind::WouldBlock` when
/// the socket buffer is full.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a live slice of `buf.len()` readable bytes, and
        // `fd` is open.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        match check_size(n) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Sets `TCP_NODELAY` (replies are small and must not wait for Nagle).
pub fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` outlives the call and its size is passed; `fd` is open.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Sets `TCP_QUICKACK` for the data just read. Postfix writes each milter
/// packet as its own small write with Nagle on; after a packet that needs no
/// reply we send nothing, so a delayed ACK (up to 40 ms) would hold back the
/// MTA's next packet. The kernel clears the flag again, so it is re-armed
/// after every read.
pub fn set_quickack(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` outlives the call and its size is passed; `fd` is open.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// An epoll instance.
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Self> {
        // SAFETY: no pointers; the result is checked before use.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        debug_assert!(fd >= 0);
        // SAFETY: epoll_create1 just returned this descriptor; nothing else
        // owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Registers `fd` edge-triggered for `events` (plus `EPOLLET`),
    /// reporting `token`. The registration ends when the fd is closed.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, events)
    }

    /// Changes the events `fd` is registered for.
    pub fn modify(&self, fd: BorrowedFd<'_>, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, events)
    }

    fn ctl(&self, op: libc::c_int, fd: BorrowedFd<'_>, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: events | libc::EPOLLET as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event that outlives the call; both
        // fds are open (one owned, one borrowed).
        check(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) })
            .map(drop)
    }

    /// Collects ready events without blocking; returns how many were stored
    /// at the front of `events`.
    pub fn poll(&self, events: &mut [libc::epoll_event]) -> io::Result<usize> {
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        loop {
            // SAFETY: `events` is a live, exclusively borrowed array of at
            // least `max` entries for the kernel to fill.
            let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, 0) };
            match check(n) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(n) => return Ok(n as usize),
            }
        }
    }
}

/// A glommio stream over a duplicate of `fd`, used only for the io_uring
/// readiness poll glommio arms when it adopts a descriptor (see `io.rs`).
pub fn glommio_watch(fd: BorrowedFd<'_>) -> io::Result<glommio::net::UnixStream> {
    let dup = fd.try_clone_to_owned()?;
    use std::os::fd::IntoRawFd;
    // SAFETY: `dup` is a fresh descriptor we own; the glommio stream takes
    // ownership and closes it when dropped.
    Ok(unsafe { <glommio::net::UnixStream as FromRawFd>::from_raw_fd(dup.into_raw_fd()) })
}

/// A connection fd in transit between shards as a plain integer. Owns the fd:
/// dropping it (say, in a channel nobody drains any more) closes the socket.
/// Built only from an `OwnedFd` and never copied, so exactly one owner exists.
#[derive(Debug)]
pub struct HandoffFd(RawFd);

impl HandoffFd {
    pub fn new(fd: OwnedFd) -> Self {
        use std::os::fd::IntoRawFd;
        Self(fd.into_raw_fd())
    }

    pub fn into_owned(self) -> OwnedFd {
        let fd = std::mem::ManuallyDrop::new(self).0;
        debug_assert!(fd >= 0);
        // SAFETY: `fd` came from `OwnedFd::into_raw_fd` in `new`, the field is
        // private and the type is neither Clone nor Copy, and ManuallyDrop
        // keeps our Drop from closing it: the new OwnedFd is its only owner.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }
}

impl Drop for HandoffFd {
    fn drop(&mut self) {
        // SAFETY: as in `into_owned`, we are the only owner of this open fd;
        // the OwnedFd closes it once.
        drop(unsafe { OwnedFd::from_raw_fd(self.0) });
    }
}

/// The local time zone's current offset from UTC in minutes (`TZ` or
/// `/etc/localtime`, as libc sees it); 0 when it cannot be read.
pub fn utc_offset_minutes() -> i32 {
    let now: libc::time_t = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
    {
        Ok(d) => libc::time_t::try_from(d.as_secs()).unwrap_or(0),
        Err(_) => 0,
    };
    let mut tm = std::mem::MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: `now` and `tm` are valid for the call; localtime_r is the
    // thread-safe variant and writes only into `tm`.
    let ok = unsafe { !libc::localtime_r(&now, tm.as_mut_ptr()).is_null() };
    if !ok {
        return 0;
    }
    // SAFETY: localtime_r succeeded, so it initialised `tm`.
    let tm = unsafe { tm.assume_init() };
    i32::try_from(tm.tm_gmtoff / 60).unwrap_or(0)
}

/// Returns freed memory to the OS now (mimalloc keeps freed pages for reuse;
/// after a policy swap that is a whole old policy tree).
pub fn release_free_memory() {
    // SAFETY: mi_collect only walks the allocator's own heaps; `true` forces
    // freed segments back to the OS. No pointers are passed.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
