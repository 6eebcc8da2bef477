//! Per-shard connection deadlines without a timer per await.
//!
//! A glommio `timeout()` around every read and write inserts and removes a
//! reactor timer each time (and the reactor re-arms its io_uring timeout),
//! which measurably costs CPU per round trip. Instead each connection owns a
//! slot here holding the deadline of its current wait; one task per shard
//! sweeps every [`SWEEP_INTERVAL`] and shuts down (`SHUT_RDWR`) the socket of
//! every connection past its deadline, so the pending read returns end of file
//! (or the write fails) and the connection task ends, counting a protocol
//! error because [`Watch::expired`] says why.
//!
//! A deadline is exact when armed and is noticed at most one interval late:
//! a 1 s timeout fires between 1 s and 1.5 s.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::slab::Slab;

/// How often the sweeper looks for expired deadlines.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

struct Slot {
    /// The connection's socket; valid while the slot is in use (the
    /// connection frees its slot before it closes the socket).
    fd: RawFd,
    deadline: Option<Instant>,
    /// The sweeper shut the connection down for a missed deadline.
    expired: bool,
}

/// The shard's registry of connection deadlines.
#[derive(Default)]
pub struct Sweeper {
    slots: RefCell<Slab<Slot>>,
}

impl Sweeper {
    /// Registers a connection's socket. The socket must stay open until the
    /// returned [`Watch`] is dropped.
    pub fn register(&self, fd: RawFd) -> Watch<'_> {
        let index = self.slots.borrow_mut().insert(Slot {
            fd,
            deadline: None,
            expired: false,
        });
        Watch {
            sweeper: self,
            index,
            armed: Cell::new(false),
        }
    }

    /// Shuts down every connection whose deadline is before `now`; returns
    /// how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut n = 0;
        for slot in self.slots.borrow_mut().iter_mut() {
            if slot.deadline.is_some_and(|d| d <= now) {
                slot.deadline = None;
                slot.expired = true;
                // The fd is open while the slot is in use (see `Slot::fd`).
                if let Err(e) = crate::sys::shutdown(slot.fd) {
                    log::debug!("shutdown of a timed-out connection: {e}");
                }
                n += 1;
            }
        }
        n
    }

    /// Slots in use (tests and status).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.borrow().len()
    }
}

/// A connection's slot; frees it when dropped.
pub struct Watch<'a> {
    sweeper: &'a Sweeper,
    index: usize,
    armed: Cell<bool>,
}

impl Watch<'_> {
    /// The current wait must end within `limit`.
    pub fn arm(&self, limit: Duration) {
        self.arm_at(Instant::now() + limit);
    }

    fn arm_at(&self, deadline: Instant) {
        self.sweeper.slots.borrow_mut()[self.index].deadline = Some(deadline);
        self.armed.set(true);
    }

    /// The wait ended in time.
    pub fn disarm(&self) {
        if self.armed.replace(false) {
            self.sweeper.slots.borrow_mut()[self.index].deadline = None;
        }
    }

    /// Whether the sweeper shut the connection down for a missed deadline.
    pub fn expired(&self) -> bool {
        self.sweeper.slots.borrow()[self.index].expired
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.sweeper.slots.borrow_mut().remove(self.index);
    }
}

/// The shard's sweeper task: runs until the shard's executor ends.
pub async fn run(sweeper: std::rc::Rc<Sweeper>) {
    loop {
        glommio::timer::sleep(SWEEP_INTERVAL).await;
        sweeper.sweep(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn sweep_shuts_down_only_expired_connections_and_reuses_slots() {
        let (a, mut a_peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let (b, mut b_peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let s = Sweeper::default();
        let t0 = Instant::now();
        let wa = s.register(a.as_raw_fd());
        let wb = s.register(b.as_raw_fd());
        wa.arm_at(t0 + Duration::from_secs(1));
        wb.arm_at(t0 + Duration::from_secs(3));
        assert_eq!(s.sweep(t0), 0);
        assert_eq!(s.sweep(t0 + Duration::from_secs(2)), 1);
        assert!(wa.expired() && !wb.expired());
        // The peer of a shut-down socket sees end of file.
        let mut byte = [0u8; 1];
        assert_eq!(a_peer.read(&mut byte).unwrap(), 0);
        // Disarmed deadlines never fire; an expiry is reported once.
        wb.disarm();
        assert_eq!(s.sweep(t0 + Duration::from_secs(10)), 0);
        b_peer.set_nonblocking(true).unwrap();
        assert!(b_peer.read(&mut byte).is_err(), "b is still open");
        drop(wa);
        assert_eq!(s.len(), 1);
        let wc = s.register(a.as_raw_fd());
        assert_eq!(wc.index, 0, "freed slot reused");
        assert!(!wc.expired(), "a reused slot starts unexpired");
        drop((wb, wc));
        assert_eq!(s.len(), 0);
    }
}
