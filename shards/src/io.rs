//! Connection I/O with batched readiness: one edge-triggered epoll instance
//! per shard instead of one io_uring poll per read.
//!
//! Why: glommio 0.9's `NonBufferedStream::poll_read` arms a one-shot io_uring
//! `POLL_ADD` after every `recv` that does not fill the buffer, so each milter
//! round trip costs a poll request, its completion and a task wake-up, and its
//! accept submits one request per connection. A tokio server pays one
//! `epoll_wait` per *batch* of ready sockets instead. Here:
//!
//! - every connection and listener socket is non-blocking and registered once
//!   (`EPOLLIN | EPOLLRDHUP`, edge-triggered) in the shard's epoll instance,
//!   under a token that indexes a slab of wakers. `EPOLLOUT` is added only
//!   while a reply waits for socket buffer space: registered all the time, it
//!   would report an event (and wake a parked shard) each time the MTA reads
//!   a reply;
//! - a connection first tries `recv`/`send`/`accept4`; only on `EAGAIN` does
//!   it park its waker in its slab entry;
//! - one poller task per shard collects all ready events with a non-blocking
//!   `epoll_wait`, wakes the parked tasks, yields so they run, and polls
//!   again; only when nothing is ready does it ask glommio's reactor to wake
//!   it when the epoll fd becomes readable (one io_uring poll per idle
//!   period, not per read).
//!
//! glommio 0.9 has no public "wait until this fd is readable". It does arm
//! exactly that poll when it adopts a descriptor as a stream (`FromRawFd`),
//! and its `poll_read` stays pending until that poll completes, then tries
//! `recv`, which fails at once on a non-socket such as an epoll fd. So
//! [`readable`] adopts a duplicate of the epoll fd and treats "the read
//! finished, with any result" as "readable". The unit test
//! `readable_waits_for_the_fd` pins that behaviour, so a glommio upgrade that
//! changed it fails the tests instead of making the poller spin.
//!
//! Everything is shard-local (`Rc`, `RefCell`); no waker is cloned per wait
//! unless the task's waker changed, so glommio's i16 task reference count
//! cannot overflow however long a connection lives.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::slab::Slab;
use crate::sys;

/// Events collected per `epoll_wait`.
const EVENTS_PER_POLL: usize = 256;

const READ_EVENTS: u32 =
    (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLPRI) as u32;
const WRITE_EVENTS: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
/// The events after which the socket stays readable (end of file, error).
const CLOSED_EVENTS: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
/// What a socket is registered for while it is not waiting to write.
const INTEREST: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    Read,
    Write,
}

#[derive(Default)]
struct Waiter {
    waker: Option<Waker>,
    /// An event arrived since the owner last cleared it.
    ready: bool,
}

#[derive(Default)]
struct Entry {
    read: Waiter,
    write: Waiter,
    /// The peer closed its side, or the socket failed (`EPOLLRDHUP`,
    /// `EPOLLHUP`, `EPOLLERR`). Never cleared: unlike new bytes, a pending
    /// end of file or error gives no new edge once its event was taken.
    closed: bool,
}

impl Entry {
    fn side(&mut self, dir: Dir) -> &mut Waiter {
        match dir {
            Dir::Read => &mut self.read,
            Dir::Write => &mut self.write,
        }
    }
}

/// The shard's readiness reactor.
pub struct Readiness {
    epoll: sys::Epoll,
    /// Waiters per registered socket, indexed by the socket's epoll token.
    entries: RefCell<Slab<Entry>>,
}

impl Readiness {
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            epoll: sys::Epoll::new()?,
            entries: RefCell::default(),
        })
    }

    /// Registers a non-blocking socket; the returned handle owns it.
    pub fn register(&self, fd: OwnedFd) -> io::Result<Socket<'_>> {
        let token = self.entries.borrow_mut().insert(Entry::default());
        if let Err(e) = self.epoll.add(fd.as_fd(), token as u64, INTEREST) {
            self.entries.borrow_mut().remove(token);
            return Err(e);
        }
        Ok(Socket {
            fd,
            readiness: self,
            token,
            writing: Cell::new(false),
            quickack: Cell::new(false),
            drained: Cell::new(false),
        })
    }

    /// Collects ready events without blocking and wakes their waiters;
    /// returns how many events there were.
    fn dispatch(&self, events: &mut [libc::epoll_event]) -> io::Result<usize> {
        let n = self.epoll.poll(events)?;
        let mut entries = self.entries.borrow_mut();
        for ev in &events[..n] {
            let (mask, token) = (ev.events, ev.u64);
            let Some(entry) = entries.get_mut(token as usize) else {
                continue;
            };
            if mask & CLOSED_EVENTS != 0 {
                entry.closed = true;
            }
            for (dir, interest) in [(Dir::Read, READ_EVENTS), (Dir::Write, WRITE_EVENTS)] {
                if mask & interest != 0 {
                    let side = entry.side(dir);
                    side.ready = true;
                    if let Some(w) = side.waker.take() {
                        w.wake();
                    }
                }
            }
        }
        Ok(n)
    }

    /// Slab entries in use (tests).
    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.entries.borrow().len()
    }
}

/// The shard's poller task: runs until the shard's executor ends.
pub async fn poll(readiness: Rc<Readiness>) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_POLL];
    loop {
        match readiness.dispatch(&mut events) {
            // Let the woken tasks run, then look again before parking: under
            // load the next events are usually already there.
            Ok(n) if n > 0 => futures_lite::future::yield_now().await,
            Ok(_) => readable(readiness.epoll.as_fd()).await,
            Err(e) => {
                log::error!("epoll_wait failed: {e}");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Completes when glommio's reactor sees `fd` readable (see the module doc).
/// `fd` must not be a connected socket: its bytes would be consumed.
pub async fn readable(fd: BorrowedFd<'_>) {
    use futures_lite::AsyncReadExt;
    let mut watch = match sys::glommio_watch(fd) {
        Ok(w) => w,
        Err(e) => {
            log::error!("cannot watch fd: {e}");
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            return;
        }
    };
    let mut byte = [0u8; 1];
    let _ = watch.read(&mut byte).await;
}

/// A registered non-blocking socket. Dropping it frees its slab entry and
/// closes the socket (which ends the epoll registration).
pub struct Socket<'a> {
    fd: OwnedFd,
    readiness: &'a Readiness,
    token: usize,
    /// Registered for `EPOLLOUT` too (a write is waiting for space).
    writing: Cell<bool>,
    /// A TCP socket that acknowledges every read at once (see
    /// [`sys::set_quickack`]).
    quickack: Cell<bool>,
    /// The last read returned less than its buffer: the socket was empty
    /// then, so the next read waits for an event instead of first trying a
    /// `recv` that would only say `EAGAIN`.
    drained: Cell<bool>,
}

impl Socket<'_> {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads what is available into `buf` (at least one byte, or 0 at end of
    /// file), waiting for input if there is none.
    ///
    /// A read that returns less than `buf` emptied the socket's receive
    /// queue (a stream `recv` copies until the buffer is full or the queue
    /// is empty), and the readiness flag was cleared before it: bytes that
    /// arrive later are a new edge-triggered event. So the next read waits
    /// for that event instead of spending a `recv` on `EAGAIN`, as tokio
    /// does. Under Postfix, where every milter packet arrives on its own,
    /// that was about half the `recv` calls. The peer's close is the
    /// exception: once its event was taken it gives no new one, so a socket
    /// whose peer closed is read at once.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.drained.replace(false) && !self.closed() {
            self.ready(Dir::Read).await;
        }
        loop {
            self.clear(Dir::Read);
            match sys::recv(self.fd(), buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.ready(Dir::Read).await,
                Ok(n) => {
                    self.drained.set(n > 0 && n < buf.len());
                    if n > 0 && self.quickack.get() {
                        // Best effort: a failure only costs latency.
                        let _ = sys::set_quickack(self.fd());
                    }
                    return Ok(n);
                }
                r => return r,
            }
        }
    }

    /// Acknowledges every read at once (TCP peers that use Nagle).
    pub fn ack_reads_at_once(&self) {
        self.quickack.set(true);
    }

    /// Writes all of `buf`, waiting for buffer space as needed.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            self.clear(Dir::Write);
            match sys::send(self.fd(), buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.writing.replace(true) {
                        // MOD re-checks readiness, so space freed since the
                        // send is still reported.
                        self.readiness.epoll.modify(
                            self.fd(),
                            self.token as u64,
                            INTEREST | libc::EPOLLOUT as u32,
                        )?;
                    }
                    self.ready(Dir::Write).await;
                }
                Err(e) => return Err(e),
            }
        }
        if self.writing.replace(false) {
            self.readiness
                .epoll
                .modify(self.fd(), self.token as u64, INTEREST)?;
        }
        Ok(())
    }

    /// Waits until a non-blocking `connect` on this socket finished, and
    /// returns its outcome (`SO_ERROR`).
    pub async fn connected(&self) -> io::Result<()> {
        self.clear(Dir::Write);
        if !self.writing.replace(true) {
            // MOD re-checks readiness, so a connect that completed before
            // it is still reported.
            self.readiness.epoll.modify(
                self.fd(),
                self.token as u64,
                INTEREST | libc::EPOLLOUT as u32,
            )?;
        }
        self.ready(Dir::Write).await;
        if self.writing.replace(false) {
            self.readiness
                .epoll
                .modify(self.fd(), self.token as u64, INTEREST)?;
        }
        match socket2::SockRef::from(&self.fd).take_error()? {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Accepts one pending connection (non-blocking, close-on-exec), waiting
    /// for one if the backlog is empty. For a listening socket.
    pub async fn accept(&self) -> io::Result<OwnedFd> {
        loop {
            self.clear(Dir::Read);
            match sys::accept(self.fd())? {
                Some(fd) => return Ok(fd),
                None => self.ready(Dir::Read).await,
            }
        }
    }

    /// Accepts one pending connection if there is one, without waiting.
    #[cfg(test)]
    pub fn try_accept(&self) -> io::Result<Option<OwnedFd>> {
        sys::accept(self.fd())
    }

    fn closed(&self) -> bool {
        self.readiness.entries.borrow()[self.token].closed
    }

    fn clear(&self, dir: Dir) {
        self.readiness.entries.borrow_mut()[self.token]
            .side(dir)
            .ready = false;
    }

    fn ready(&self, dir: Dir) -> Ready<'_> {
        Ready { socket: self, dir }
    }
}

impl Drop for Socket<'_> {
    fn drop(&mut self) {
        // A waker parked here must not outlive the task's interest in it.
        self.readiness.entries.borrow_mut().remove(self.token);
        // `fd` closes after this, which removes it from the epoll set.
    }
}

/// Completes once an event for `dir` arrived since the last `clear`.
struct Ready<'a> {
    socket: &'a Socket<'a>,
    dir: Dir,
}

impl Future for Ready<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut entries = self.socket.readiness.entries.borrow_mut();
        let side = entries[self.socket.token].side(self.dir);
        if side.ready {
            side.waker = None;
            return Poll::Ready(());
        }
        match &side.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => side.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Ready<'_> {
    fn drop(&mut self) {
        // Abandoned (a drain won the race): drop the parked waker now.
        if let Ok(mut entries) = self.socket.readiness.entries.try_borrow_mut() {
            entries[self.socket.token].side(self.dir).waker = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::time::{Duration, Instant};

    fn on_executor<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(f)
            .expect("executor starts")
            .join()
            .expect("executor finishes");
    }

    /// A readiness reactor with its poller task running (on an executor).
    fn polled() -> Rc<Readiness> {
        let r = Rc::new(Readiness::new().unwrap());
        glommio::spawn_local(poll(Rc::clone(&r))).detach();
        r
    }

    fn nonblocking_pair() -> (OwnedFd, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (OwnedFd::from(a), b)
    }

    /// The glommio behaviour `readable` relies on: pending until the fd is
    /// readable, then done (and not done at once, which would make the poller
    /// spin).
    #[test]
    fn readable_waits_for_the_fd() {
        on_executor(|| async {
            let r = Readiness::new().unwrap();
            let (a, mut peer) = nonblocking_pair();
            let _a = r.register(a).unwrap();
            let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 4];
            assert_eq!(r.dispatch(&mut events).unwrap(), 0, "nothing to read yet");
            let t0 = Instant::now();
            let waited = futures_lite::future::or(
                async {
                    readable(r.epoll.as_fd()).await;
                    true
                },
                async {
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                    false
                },
            )
            .await;
            assert!(!waited, "an empty epoll set is not readable");
            assert!(t0.elapsed() >= Duration::from_millis(100));
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                peer.write_all(b"x").unwrap();
                peer
            });
            readable(r.epoll.as_fd()).await;
            assert!(t0.elapsed() >= Duration::from_millis(150));
            drop(writer.join());
        });
    }

    /// Bytes arrive in order across many waits; wakers are parked once per
    /// entry, not once per wait; slab entries are freed and reused.
    #[test]
    fn slab_reads_writes_and_frees_entries() {
        on_executor(|| async {
            let r = polled();
            let (a, peer) = nonblocking_pair();
            let sock = r.register(a).unwrap();
            let writer = std::thread::spawn(move || {
                let mut peer = peer;
                for i in 0..200u32 {
                    peer.write_all(&i.to_be_bytes()).unwrap();
                    if i % 10 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                let mut echo = vec![0u8; 800];
                peer.read_exact(&mut echo).unwrap();
                echo
            });
            let mut got = Vec::new();
            let mut buf = [0u8; 7];
            while got.len() < 800 {
                let n = sock.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            let want: Vec<u8> = (0..200u32).flat_map(u32::to_be_bytes).collect();
            assert_eq!(got, want, "no byte lost or reordered");
            sock.write_all(&got).await.unwrap();
            assert_eq!(writer.join().unwrap(), want);
            {
                let entries = r.entries.borrow();
                assert!(
                    entries[sock.token].read.waker.is_none(),
                    "no waker left parked"
                );
            }
            assert_eq!(r.in_use(), 1);
            let token = sock.token;
            drop(sock);
            assert_eq!(r.in_use(), 0);
            let (b, _peer_b) = nonblocking_pair();
            let again = r.register(b).unwrap();
            assert_eq!(again.token, token, "freed entry reused");
        });
    }

    /// After a short read the next read waits for an event instead of
    /// trying `recv`: bytes and the peer's close that come later still
    /// arrive, in 2,000 ping-pongs where the peer answers at once, now and
    /// then while the reader is away (the event lands before the read
    /// starts), and after pauses.
    #[test]
    fn short_reads_wait_for_the_next_event() {
        on_executor(|| async {
            let r = polled();
            let (a, peer) = nonblocking_pair();
            let sock = r.register(a).unwrap();
            let peer_thread = std::thread::spawn(move || {
                let mut peer = peer;
                let mut one = [0u8; 4];
                for i in 0..2_000u32 {
                    if i % 500 == 0 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    peer.write_all(&i.to_be_bytes()).unwrap();
                    peer.read_exact(&mut one).unwrap();
                    assert_eq!(one, i.to_be_bytes());
                }
                std::thread::sleep(Duration::from_millis(20));
                peer.write_all(&[7u8; 16]).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                drop(peer);
            });
            let mut buf = [0u8; 16];
            let mut pending = Vec::new();
            let mut answered = 0;
            while answered < 2_000 {
                // a lost wake-up hangs the read: fail instead
                let n = futures_lite::future::or(sock.read(&mut buf), async {
                    glommio::timer::sleep(Duration::from_secs(10)).await;
                    panic!("read {answered}: no wake-up in 10 s");
                })
                .await
                .unwrap();
                assert!(n > 0, "no early end of file");
                assert!(sock.drained.get(), "a {n}-byte read of 16 is short");
                pending.extend_from_slice(&buf[..n]);
                while pending.len() >= 4 {
                    let word: Vec<u8> = pending.drain(..4).collect();
                    sock.write_all(&word).await.unwrap();
                    answered += 1;
                }
                if answered % 3 == 0 {
                    // busy elsewhere: the peer's next word and its event
                    // (dispatched by the poller) come before the read
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
            }
            assert_eq!(sock.read(&mut buf).await.unwrap(), 16);
            assert!(!sock.drained.get(), "a full read may have left bytes");
            assert_eq!(sock.read(&mut buf).await.unwrap(), 0, "the peer's close");
            peer_thread.join().unwrap();
        });
    }

    /// Bytes and the peer's close that arrive together, their events taken
    /// before the read: the short read of the bytes is followed by the end
    /// of file, not by a wait for an event that will not come.
    #[test]
    fn a_short_read_then_the_close_taken_before_it() {
        on_executor(|| async {
            let r = polled();
            for shutdown in [true, false] {
                let (a, mut peer) = nonblocking_pair();
                let sock = r.register(a).unwrap();
                peer.write_all(b"abc").unwrap();
                if shutdown {
                    peer.shutdown(std::net::Shutdown::Write).unwrap();
                } else {
                    drop(peer);
                }
                // the poller takes both events before the first read
                glommio::timer::sleep(Duration::from_millis(20)).await;
                let mut buf = [0u8; 16];
                assert_eq!(sock.read(&mut buf).await.unwrap(), 3);
                assert!(sock.drained.get());
                let n = futures_lite::future::or(sock.read(&mut buf), async {
                    glommio::timer::sleep(Duration::from_secs(5)).await;
                    panic!("the close was not seen in 5 s (shutdown: {shutdown})");
                })
                .await
                .unwrap();
                assert_eq!(n, 0, "end of file");
            }
        });
    }

    /// A read abandoned while waiting (the drain race between messages)
    /// leaves no waker behind: 100,000 abandoned waits would overflow
    /// glommio's i16 task reference count if each leaked a clone.
    #[test]
    fn abandoned_reads_leave_no_waker() {
        on_executor(|| async {
            let r = polled();
            let (a, _peer) = nonblocking_pair();
            let sock = r.register(a).unwrap();
            let mut buf = [0u8; 16];
            for _ in 0..100_000 {
                let mut polled = false;
                let other = futures_lite::future::poll_fn(|cx| {
                    if polled {
                        Poll::Ready(None)
                    } else {
                        polled = true;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                });
                let won =
                    futures_lite::future::or(async { Some(sock.read(&mut buf).await) }, other)
                        .await;
                assert!(won.is_none(), "nothing to read");
            }
            assert!(r.entries.borrow()[sock.token].read.waker.is_none());
        });
    }

    /// A reply larger than the socket buffer waits for space (`EPOLLOUT`
    /// added for the wait only) and arrives whole and in order.
    #[test]
    fn write_all_waits_for_buffer_space() {
        on_executor(|| async {
            let r = polled();
            let (a, mut peer) = nonblocking_pair();
            let sock = r.register(a).unwrap();
            let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
            let want = data.clone();
            let reader = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                let mut got = vec![0u8; want.len()];
                peer.read_exact(&mut got).unwrap();
                got == want
            });
            sock.write_all(&data).await.unwrap();
            assert!(
                !sock.writing.get(),
                "EPOLLOUT interest dropped after the write"
            );
            assert!(reader.join().unwrap(), "bytes arrive whole and in order");
        });
    }

    /// A listener registered in the slab accepts a burst without waiting
    /// between connections, and then waits for the next one.
    #[test]
    fn accept_drains_the_backlog_then_waits() {
        on_executor(|| async {
            let dir = std::env::temp_dir().join(format!("mb-io-accept-{}", std::process::id()));
            let _ = std::fs::remove_file(&dir);
            let l = std::os::unix::net::UnixListener::bind(&dir).unwrap();
            l.set_nonblocking(true).unwrap();
            let r = polled();
            let listener = r.register(OwnedFd::from(l)).unwrap();
            let clients: Vec<_> = (0..5)
                .map(|_| std::os::unix::net::UnixStream::connect(&dir).unwrap())
                .collect();
            let mut accepted = Vec::new();
            while let Some(fd) = listener.try_accept().unwrap() {
                accepted.push(fd);
            }
            assert_eq!(accepted.len(), 5);
            let path = dir.clone();
            let late = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                std::os::unix::net::UnixStream::connect(&path).unwrap()
            });
            let fd = listener.accept().await.unwrap();
            let _late = late.join().unwrap();
            drop((fd, accepted, clients));
            let _ = std::fs::remove_file(&dir);
        });
    }
}
