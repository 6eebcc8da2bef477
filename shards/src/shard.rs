//! One shard: a glommio executor pinned to one CPU that owns its connections,
//! their buffers, its counters and its policy snapshot. Nothing here is locked
//! or shared with other shards except the per-shard connection gauges that the
//! unix-socket acceptor reads to pick the least-loaded shard.
//!
//! Accepting (`accept4` until the backlog is empty, then one wait for the
//! listener; see `io.rs`):
//! - **unix socket** (the Postfix default): a unix listener cannot be shared by
//!   several executors, so shard 0 accepts and hands each connection, as a
//!   raw fd, to the least-loaded shard over a bounded channel; the target
//!   registers it with its own epoll. A connection never moves after that.
//! - **TCP**: every shard binds the same address with SO_REUSEPORT and the
//!   kernel spreads connections.
//!
//! Connection I/O is plain non-blocking `recv`/`send` with readiness from one
//! edge-triggered epoll per shard (`io.rs`), not glommio's streams, whose
//! one-shot io_uring poll per read cost more CPU per round trip than a tokio
//! echo server (docs/bench-runs/2026-11-25-io-path.md).
//!
//! Every wait on a connection is bounded (`milter.idle_timeout` for the next
//! command, `milter.write_timeout` for a reply) by a deadline that the shard's
//! sweeper enforces (`sweeper.rs`; up to 0.5 s late). Beyond
//! `milter.connections_max_per_shard` a connection is still served, but every
//! transaction on it gets `451 4.3.2` so Postfix defers the mail, whatever its
//! `milter_default_action` says.
//!
//! Drain (SIGTERM): listeners stop, idle connections close at once, a
//! connection inside a message finishes that message and then closes; the
//! shard returns when no connection is left or the grace period ends.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use glommio::timer::sleep;
use hdrhistogram::Histogram;
use mb_engine::config::MilterConfig;
use mb_engine::ctl_api::{ShardStatus, VerdictCounts};
use mb_engine::filter::content::{ContentVerdict, ScanPool};
use mb_engine::milter::{Conversation, Output, PendingScan, Settings};
use mb_engine::policy::Policy;

use crate::io::{Readiness, Socket};
use crate::slab::Slab;
use crate::sys::HandoffFd;

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Milter (Postfix `smtpd_milters`).
    Milter,
    /// Postfix policy delegation (`check_policy_service`).
    Policyd,
    /// SMTP ingress of the after-queue content filter.
    Smtp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Milter => "milter",
            Proto::Policyd => "policy",
            Proto::Smtp => "smtp",
        }
    }
}

/// A connection handed from the unix acceptor to another shard.
pub type Handoff = (HandoffFd, Proto);

/// Commands from the control plane to a shard.
#[derive(Debug)]
pub enum ShardCommand {
    /// Swap in a new policy snapshot (conversations pick it up at their next
    /// message).
    Swap(Arc<Policy>),
    /// Report status on the given channel.
    Status(flume::Sender<ShardStatus>),
    /// A `mbctl queue`/`quarantine` request for this shard's spool.
    Queue(
        mb_engine::ctl_api::Request,
        flume::Sender<Result<mb_engine::ctl_api::Answer, String>>,
    ),
    /// Stop accepting, finish conversations, return.
    Drain,
}

/// State every shard and the control plane can read.
#[derive(Debug)]
pub struct Shared {
    /// Open connections per shard (gauges for least-loaded hand-off).
    pub connections: Vec<AtomicU32>,
}

/// Everything a shard starts with.
pub struct ShardContext {
    /// Shard index.
    pub id: u16,
    /// CPU it is pinned to.
    pub cpu: usize,
    /// Milter listener settings.
    pub milter: MilterConfig,
    /// Initial policy snapshot.
    pub policy: Arc<Policy>,
    /// The unix socket to accept on (shard 0 only): path, mode, group id.
    pub unix_socket: Option<(PathBuf, u32, Option<u32>)>,
    /// The policy delegation unix socket (shard 0 only): path, mode, group id.
    pub policyd_socket: Option<(PathBuf, u32, Option<u32>)>,
    /// Policy delegation TCP listeners (SO_REUSEPORT on every shard).
    pub policyd_tcp: Vec<SocketAddr>,
    /// Commands from the control plane.
    pub commands: flume::Receiver<ShardCommand>,
    /// Connections handed to this shard by the acceptor.
    pub handoff_rx: flume::Receiver<Handoff>,
    /// Hand-off senders to every shard (index = shard id).
    pub handoff_tx: Vec<flume::Sender<Handoff>>,
    /// Shared gauges.
    pub shared: Arc<Shared>,
    /// Reports start-up success or the reason for failure.
    pub ready: std::sync::mpsc::Sender<Result<u16, String>>,
    /// Longest drain.
    pub grace: Duration,
    /// The after-queue path (`[delivery] enabled`).
    pub delivery: Option<Arc<crate::deliver::Setup>>,
}

/// Per-shard counters and the reply latency histogram.
struct Stats {
    connections_total: u64,
    connections_refused: u64,
    protocol_errors: u64,
    messages: u64,
    policy_requests: u64,
    verdicts: VerdictCounts,
    scanned: u64,
    scan_batches: u64,
    latency_us: Histogram<u64>,
}

/// A one-shot, shard-local broadcast: fired once on drain, wakes every waiter.
///
/// Each waiting future owns one slot and frees it when dropped, so a loop that
/// waits on the signal once per accepted connection holds one waker, not one
/// per iteration. (glommio counts task references in an `i16`: leaking a waker
/// clone per accept aborts the process after 32,767 accepts.)
#[derive(Default)]
struct DrainSignal {
    fired: Cell<bool>,
    /// One slot per waiting future (`None` once fired).
    slots: RefCell<Slab<Option<Waker>>>,
}

impl DrainSignal {
    fn fire(&self) {
        self.fired.set(true);
        for waker in self.slots.borrow_mut().iter_mut().filter_map(Option::take) {
            waker.wake();
        }
    }

    fn wait(&self) -> DrainWait<'_> {
        DrainWait {
            signal: self,
            slot: None,
        }
    }
}

/// A future that completes when the drain signal fires.
struct DrainWait<'a> {
    signal: &'a DrainSignal,
    slot: Option<usize>,
}

impl std::future::Future for DrainWait<'_> {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.signal.fired.get() {
            return Poll::Ready(());
        }
        let mut slots = self.signal.slots.borrow_mut();
        match self.slot {
            Some(i) => match &mut slots[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                entry => *entry = Some(cx.waker().clone()),
            },
            None => {
                let i = slots.insert(Some(cx.waker().clone()));
                drop(slots);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            self.signal.slots.borrow_mut().remove(i);
        }
    }
}

/// Shard-local state shared by the shard's tasks (never across threads).
pub(crate) struct Local {
    pub(crate) id: u16,
    cpu: usize,
    pub(crate) milter: MilterConfig,
    pub(crate) policy: RefCell<Arc<Policy>>,
    /// Scratch space of the content filter, one per shard.
    scan_pool: RefCell<ScanPool>,
    /// The milter connections' end-of-message scans, waiting for
    /// [`scan_batcher`].
    scans: ScanQueue,
    /// The after-queue path, once its spool is open.
    pub(crate) delivery: std::cell::OnceCell<Rc<crate::deliver::Runtime>>,
    open: Cell<u32>,
    pub(crate) buffer_bytes: Cell<u64>,
    stats: RefCell<Stats>,
    drain: DrainSignal,
    sweeper: Rc<crate::sweeper::Sweeper>,
    pub(crate) readiness: Rc<Readiness>,
    shared: Arc<Shared>,
}

impl Local {
    fn status(&self) -> ShardStatus {
        let stats = self.stats.borrow();
        let h = &stats.latency_us;
        let q = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        ShardStatus {
            shard: self.id,
            cpu: Some(self.cpu),
            connections: self.open.get(),
            connections_max: self.milter.connections_max_per_shard,
            connections_total: stats.connections_total,
            connections_refused: stats.connections_refused,
            protocol_errors: stats.protocol_errors,
            messages: stats.messages,
            policy_requests: stats.policy_requests,
            verdicts: stats.verdicts,
            scanned: stats.scanned,
            scan_batches: stats.scan_batches,
            latency_p50_us: q(0.5),
            latency_p99_us: q(0.99),
            latency_p999_us: q(0.999),
            buffer_bytes: self.buffer_bytes.get(),
            config_generation: self.policy.borrow().generation(),
            queue: self.delivery.get().map(|rt| queue_status(rt)),
        }
    }

    /// Judges a batch of messages (`(raw, truncated)`) with the content
    /// filter, on this shard's scratch; verdicts in the same order.
    pub(crate) fn scan_batch(
        &self,
        filter: &Arc<mb_engine::filter::content::ContentFilter>,
        messages: &[(&[u8], bool)],
    ) -> Vec<mb_engine::filter::content::ContentVerdict> {
        {
            let mut stats = self.stats.borrow_mut();
            stats.scanned += messages.len() as u64;
            stats.scan_batches += 1;
        }
        self.scan_pool.borrow_mut().judge_batch(filter, messages)
    }

    /// Whether the shard is draining.
    pub(crate) fn draining(&self) -> bool {
        self.drain.fired.get()
    }

    /// Resolves when the shard starts draining.
    pub(crate) async fn drained(&self) {
        self.drain.wait().await;
    }

    /// Counts policy delegation requests and their reply latency.
    pub(crate) fn record_policy(&self, requests: u64, started: Instant) {
        let mut stats = self.stats.borrow_mut();
        stats.policy_requests += requests;
        let us = u64::try_from(started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = stats.latency_us.record(us.min(60_000_000));
    }

    fn gauge(&self) -> &AtomicU32 {
        &self.shared.connections[usize::from(self.id)]
    }
}

/// Runs a shard until drained; returns the number of connections still open
/// when the grace period ended (0 after a clean drain).
pub async fn run(ctx: ShardContext) -> u32 {
    let readiness = match Readiness::new() {
        Ok(r) => Rc::new(r),
        Err(e) => {
            let _ = ctx
                .ready
                .send(Err(format!("shard {}: cannot create epoll: {e}", ctx.id)));
            return 0;
        }
    };
    let local = Rc::new(Local {
        id: ctx.id,
        cpu: ctx.cpu,
        milter: ctx.milter.clone(),
        policy: RefCell::new(ctx.policy),
        scan_pool: RefCell::default(),
        scans: ScanQueue::default(),
        delivery: std::cell::OnceCell::new(),
        open: Cell::new(0),
        buffer_bytes: Cell::new(0),
        stats: RefCell::new(Stats {
            connections_total: 0,
            connections_refused: 0,
            protocol_errors: 0,
            messages: 0,
            policy_requests: 0,
            verdicts: VerdictCounts::default(),
            scanned: 0,
            scan_batches: 0,
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .unwrap_or_else(|_| unreachable!("valid histogram bounds")),
        }),
        drain: DrainSignal::default(),
        sweeper: Rc::default(),
        readiness,
        shared: ctx.shared,
    });
    glommio::spawn_local(crate::io::poll(Rc::clone(&local.readiness))).detach();
    glommio::spawn_local(crate::sweeper::run(Rc::clone(&local.sweeper))).detach();
    glommio::spawn_local(scan_batcher(Rc::clone(&local))).detach();

    let bound = bind(&ctx.unix_socket, &local.milter.tcp, Proto::Milter).and_then(|milter| {
        bind(&ctx.policyd_socket, &ctx.policyd_tcp, Proto::Policyd).map(|p| (milter, p))
    });
    let (milter, policyd) = match bound {
        Ok(l) => l,
        Err(e) => {
            let _ = ctx.ready.send(Err(format!("shard {}: {e:#}", ctx.id)));
            return 0;
        }
    };
    let mut committer = None;
    let smtp = match &ctx.delivery {
        None => Listeners {
            unix: None,
            tcp: Vec::new(),
        },
        Some(setup) => match start_delivery(&local, setup).await {
            Ok((listeners, task)) => {
                committer = Some(task);
                listeners
            }
            Err(e) => {
                let _ = ctx.ready.send(Err(format!("shard {}: {e:#}", ctx.id)));
                return 0;
            }
        },
    };
    let _ = ctx.ready.send(Ok(ctx.id));

    for (listeners, proto) in [
        (milter, Proto::Milter),
        (policyd, Proto::Policyd),
        (smtp, Proto::Smtp),
    ] {
        if let Some(listener) = listeners.unix {
            let local = Rc::clone(&local);
            let handoff = ctx.handoff_tx.clone();
            glommio::spawn_local(accept_unix(local, listener, handoff, proto)).detach();
        }
        for listener in listeners.tcp {
            let local = Rc::clone(&local);
            glommio::spawn_local(accept_tcp(local, listener, proto)).detach();
        }
    }
    drop(ctx.handoff_tx);
    glommio::spawn_local(receive_handoffs(Rc::clone(&local), ctx.handoff_rx)).detach();

    loop {
        match ctx.commands.recv_async().await {
            Ok(ShardCommand::Swap(policy)) => *local.policy.borrow_mut() = policy,
            Ok(ShardCommand::Status(reply)) => {
                let _ = reply.try_send(local.status());
            }
            Ok(ShardCommand::Queue(request, reply)) => match local.delivery.get() {
                Some(rt) => {
                    let rt = Rc::clone(rt);
                    glommio::spawn_local(async move {
                        let _ = reply.try_send(crate::admin::handle(rt, request).await);
                    })
                    .detach();
                }
                None => {
                    let _ = reply.try_send(Err("[delivery] is not enabled".into()));
                }
            },
            Ok(ShardCommand::Drain) | Err(_) => break,
        }
    }
    local.drain.fire();
    let deadline = Instant::now() + ctx.grace;
    if let Some(rt) = local.delivery.get() {
        rt.stop();
    }
    let busy = |local: &Local| {
        local.open.get() > 0 || local.delivery.get().is_some_and(|rt| rt.workers() > 0)
    };
    while busy(&local) && Instant::now() < deadline {
        // Keep answering status requests while draining.
        while let Ok(cmd) = ctx.commands.try_recv() {
            if let ShardCommand::Status(reply) = cmd {
                let _ = reply.try_send(local.status());
            }
        }
        sleep(Duration::from_millis(20)).await;
    }
    if let (Some(rt), Some(task)) = (local.delivery.get(), committer) {
        // What the last deliveries recorded goes to disk before the exit.
        rt.store.stop();
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let _ = glommio::timer::timeout(left, async {
            task.await;
            Ok(())
        })
        .await;
    }
    local.open.get()
}

/// Opens the shard's spool, binds the SMTP ingress and starts the spool
/// committer, the scanner and the delivery scheduler. Returns the ingress
/// listeners and the committer's task.
async fn start_delivery(
    local: &Rc<Local>,
    setup: &Arc<crate::deliver::Setup>,
) -> anyhow::Result<(Listeners, glommio::Task<()>)> {
    let dir = setup.spool_dir.join(format!("shard-{}", local.id));
    let opened = crate::store::Store::open(&dir, local.id, setup.config.group_commit)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the spool {}: {e}", dir.display()))?;
    let report = &opened.report;
    for c in &report.corruptions {
        log::error!(
            "Spool on shard {}: damaged record in segment {:?} at offset {} ({} bytes): {:?}; skipped.",
            local.id,
            c.segment,
            c.offset,
            c.len,
            c.reason
        );
    }
    let store = opened.store;
    let depth = store.depth();
    log::info!(
        "Spool on shard {} ({}): {} records read, {} messages queued ({} unscanned, \
         {} deferred, {} quarantined).",
        local.id,
        dir.display(),
        report.records,
        depth.messages,
        depth.unscanned,
        depth.deferred,
        depth.quarantined
    );
    let listeners = bind(&None, &setup.config.listen, Proto::Smtp)?;
    let rt = crate::deliver::Runtime::new(Arc::clone(setup), Rc::clone(&store));
    let committer = glommio::spawn_local(Rc::clone(&store).committer());
    glommio::spawn_local(Rc::clone(&store).compactor()).detach();
    glommio::spawn_local(crate::deliver::scanner(Rc::clone(local), Rc::clone(&rt))).detach();
    glommio::spawn_local(crate::deliver::scheduler(Rc::clone(local), Rc::clone(&rt))).detach();
    let _ = local.delivery.set(rt);
    Ok((listeners, committer))
}

/// The after-queue figures of `mbctl shard status`.
fn queue_status(rt: &crate::deliver::Runtime) -> mb_engine::ctl_api::QueueStatus {
    let d = rt.store.depth();
    let c = rt.counters();
    mb_engine::ctl_api::QueueStatus {
        messages: d.messages,
        unscanned: d.unscanned,
        active: d.active,
        deferred: d.deferred,
        quarantined: d.quarantined,
        segments: d.segments,
        syncs: d.syncs,
        broken: d.broken,
        ingress_connections: rt.smtp_open.get(),
        delivery_connections: rt.workers(),
        received: c.received,
        spool_failures: c.spool_failures,
        delivered: c.delivered,
        bounced: c.bounced,
        deferrals: c.deferred,
        dsns: c.dsns,
        relay_connections: c.connections,
        relay_failures: c.connection_failures,
    }
}

struct Listeners {
    unix: Option<OwnedFd>,
    tcp: Vec<OwnedFd>,
}

/// Backlog of the unix listener (glommio's value before this module bound
/// its own sockets).
const UNIX_BACKLOG: i32 = 128;
/// Backlog of each TCP listener.
const TCP_BACKLOG: i32 = 1024;

fn bind(
    unix: &Option<(PathBuf, u32, Option<u32>)>,
    tcp: &[SocketAddr],
    proto: Proto,
) -> anyhow::Result<Listeners> {
    let what = proto.name();
    use socket2::{Domain, SockAddr, Socket as RawSocket, Type};
    let unix = match unix {
        Some((path, mode, gid)) => {
            let listener = (|| {
                let s = RawSocket::new(Domain::UNIX, Type::STREAM, None)?;
                s.bind(&SockAddr::unix(path)?)?;
                s.listen(UNIX_BACKLOG)?;
                s.set_nonblocking(true)?;
                std::io::Result::Ok(OwnedFd::from(s))
            })()
            .map_err(|e| anyhow::anyhow!("cannot bind {what} socket {}: {e}", path.display()))?;
            crate::topology::set_socket_access(path, *mode, *gid)?;
            Some(listener)
        }
        None => None,
    };
    let tcp = tcp
        .iter()
        .map(|addr| {
            (|| {
                let s = RawSocket::new(Domain::for_address(*addr), Type::STREAM, None)?;
                s.set_reuse_address(true)?;
                // Every shard binds the same address; the kernel spreads
                // connections.
                s.set_reuse_port(true)?;
                s.bind(&(*addr).into())?;
                s.listen(TCP_BACKLOG)?;
                s.set_nonblocking(true)?;
                std::io::Result::Ok(OwnedFd::from(s))
            })()
            .map_err(|e| anyhow::anyhow!("cannot bind {what} TCP listener {addr}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Listeners { unix, tcp })
}

/// Accepts in a row before yielding to the connections already accepted.
const ACCEPT_BURST: usize = 64;

/// Accepts until drained: `accept4` until the backlog is empty, and only then
/// waits for the listener to become readable. Each connection goes to
/// `place`. Errors such as EMFILE back off instead of spinning.
async fn accept_loop(local: &Local, listener: OwnedFd, what: &str, mut place: impl FnMut(OwnedFd)) {
    let listener = match local.readiness.register(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!(
                "{what} listener on shard {} cannot be polled: {e}",
                local.id
            );
            return;
        }
    };
    let mut burst = 0;
    loop {
        if local.drain.fired.get() {
            return;
        }
        // Without waiting while the backlog lasts; the drain signal is only
        // polled (and registered) when the accept has to wait.
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            local.drain.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(fd)) => place(fd),
            Some(Err(e)) => {
                log::warn!("{what} accept failed on shard {}: {e}", local.id);
                sleep(Duration::from_millis(50)).await;
            }
        }
        burst += 1;
        if burst >= ACCEPT_BURST {
            burst = 0;
            futures_lite::future::yield_now().await;
        }
    }
}

/// Shard 0's unix acceptor: hands each connection to the least-loaded shard.
async fn accept_unix(
    local: Rc<Local>,
    listener: OwnedFd,
    handoff: Vec<flume::Sender<Handoff>>,
    proto: Proto,
) {
    let mut next = 0;
    let what = format!("{} unix", proto.name());
    accept_loop(&local, listener, &what, |fd| {
        let target = least_loaded(&local.shared, next);
        next = target + 1;
        let fd = if target == usize::from(local.id) {
            fd
        } else {
            // Count it on the target now, so a burst spreads out before the
            // target has registered the connection.
            local.shared.connections[target].fetch_add(1, Ordering::Relaxed);
            match handoff[target].try_send((HandoffFd::new(fd), proto)) {
                Ok(()) => return,
                Err(e) => {
                    local.shared.connections[target].fetch_sub(1, Ordering::Relaxed);
                    e.into_inner().0.into_owned()
                }
            }
        };
        local.gauge().fetch_add(1, Ordering::Relaxed);
        glommio::spawn_local(serve(Rc::clone(&local), fd, false, proto)).detach();
    })
    .await;
}

/// The shard with the fewest open connections; ties go round-robin from
/// `start`, so one-message sessions that never overlap still spread out.
fn least_loaded(shared: &Shared, start: usize) -> usize {
    let count = shared.connections.len();
    let mut best = (start % count, u32::MAX);
    for offset in 0..count {
        let i = (start + offset) % count;
        let n = shared.connections[i].load(Ordering::Relaxed);
        if n < best.1 {
            best = (i, n);
        }
    }
    best.0
}

async fn receive_handoffs(local: Rc<Local>, handoff: flume::Receiver<Handoff>) {
    // Handed-off connections were already counted on this shard's gauge.
    while let Ok((fd, proto)) = handoff.recv_async().await {
        glommio::spawn_local(serve(Rc::clone(&local), fd.into_owned(), false, proto)).detach();
    }
}

async fn accept_tcp(local: Rc<Local>, listener: OwnedFd, proto: Proto) {
    let what = format!("{} TCP", proto.name());
    accept_loop(&local, listener, &what, |fd| {
        let _ = crate::sys::set_nodelay(std::os::fd::AsFd::as_fd(&fd));
        local.gauge().fetch_add(1, Ordering::Relaxed);
        glommio::spawn_local(serve(Rc::clone(&local), fd, true, proto)).detach();
    })
    .await;
}

/// A growable read buffer that never re-initialises bytes it already owns.
/// `data[start..end]` holds unconsumed input.
pub(crate) struct ReadBuf {
    pub(crate) data: Vec<u8>,
    start: usize,
    pub(crate) end: usize,
}

/// Initial per-connection read buffer. Postfix's frames before the body are a
/// few hundred bytes; a body chunk grows the buffer to exactly the frame's size
/// (up to 64 KiB), and it shrinks back after the message. 10,000 idle
/// connections then hold 10 MiB of buffers, well inside the milter stage's
/// 128 MB budget.
const READ_BUF_BYTES_INITIAL: usize = 1024;
/// Above this, an idle buffer is shrunk back to the initial size.
const READ_BUF_BYTES_KEEP: usize = 128 * 1024;

impl ReadBuf {
    pub(crate) fn new() -> Self {
        Self {
            data: vec![0; READ_BUF_BYTES_INITIAL],
            start: 0,
            end: 0,
        }
    }

    pub(crate) fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(self.start + n <= self.end);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space for at least `want` bytes; returns the change in capacity.
    pub(crate) fn reserve(&mut self, want: usize) -> isize {
        if self.data.len() - self.end >= want {
            return 0;
        }
        self.data.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let before = self.data.len();
        if self.data.len() - self.end < want {
            self.data.resize((self.end + want).max(before * 2), 0);
        }
        self.data.len() as isize - before as isize
    }

    pub(crate) fn spare(&mut self) -> &mut [u8] {
        &mut self.data[self.end..]
    }

    pub(crate) fn shrink_if_idle(&mut self) -> isize {
        if self.start == self.end && self.data.len() > READ_BUF_BYTES_KEEP {
            let before = self.data.len();
            self.data = vec![0; READ_BUF_BYTES_INITIAL];
            return READ_BUF_BYTES_INITIAL as isize - before as isize;
        }
        0
    }
}

pub(crate) fn adjust(cell: &Cell<u64>, delta: isize) {
    cell.set(cell.get().saturating_add_signed(delta as i64));
}

/// Serves one connection until QUIT, EOF, an error, a timeout or drain.
async fn serve(local: Rc<Local>, fd: OwnedFd, tcp: bool, proto: Proto) {
    let smtp = match proto {
        Proto::Smtp => local.delivery.get().cloned(),
        Proto::Milter | Proto::Policyd => None,
    };
    let refuse = local.drain.fired.get()
        || match &smtp {
            Some(rt) => rt.smtp_open.get() >= rt.setup.config.connections_max_per_shard,
            None => local.open.get() >= local.milter.connections_max_per_shard,
        };
    let loopback = smtp.is_some()
        && socket2::SockRef::from(&fd)
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.ip().to_canonical().is_loopback());
    if let Some(rt) = &smtp {
        rt.smtp_open.set(rt.smtp_open.get() + 1);
    }
    local.open.set(local.open.get() + 1);
    {
        let mut stats = local.stats.borrow_mut();
        stats.connections_total += 1;
        stats.connections_refused += u64::from(refuse);
    }
    let stream = match local.readiness.register(fd) {
        Ok(s) => s,
        Err(e) => {
            log::warn!(
                "{} connection on shard {} cannot be polled: {e}",
                proto.name(),
                local.id
            );
            local.stats.borrow_mut().protocol_errors += 1;
            local.open.set(local.open.get() - 1);
            local.gauge().fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    if tcp {
        stream.ack_reads_at_once();
    }
    let mut buf = ReadBuf::new();
    adjust(&local.buffer_bytes, buf.data.len() as isize);
    let mut out = Vec::with_capacity(512);

    // The stream outlives the watch, which is dropped first.
    let watch = local.sweeper.register(stream.fd().as_raw_fd());
    let end = match proto {
        Proto::Milter => {
            let settings = Settings {
                shard: local.id,
                frame_bytes_max: local.milter.frame_bytes_max,
                refuse,
            };
            let mut conv = Conversation::new(settings);
            converse(&local, &watch, &stream, &mut conv, &mut buf, &mut out).await
        }
        Proto::Policyd => {
            let mut io = crate::policyd::Io {
                watch: &watch,
                stream: &stream,
                buf: &mut buf,
                out: &mut out,
            };
            crate::policyd::converse(&local, &mut io, refuse).await
        }
        Proto::Smtp => match &smtp {
            Some(rt) => {
                let mut io = crate::ingress::Io {
                    watch: &watch,
                    stream: &stream,
                    buf: &mut buf,
                };
                crate::ingress::converse(&local, rt, &mut io, refuse, loopback).await
            }
            None => Err("SMTP connection without a delivery runtime".into()),
        },
    };
    if let Some(rt) = &smtp {
        rt.smtp_open.set(rt.smtp_open.get() - 1);
    }
    drop(watch);
    drop(stream);
    if let Err(why) = end {
        local.stats.borrow_mut().protocol_errors += 1;
        log::debug!(
            "{} connection closed on shard {}: {why}",
            proto.name(),
            local.id
        );
    }
    adjust(&local.buffer_bytes, -(buf.data.len() as isize));
    local.open.set(local.open.get() - 1);
    local.gauge().fetch_sub(1, Ordering::Relaxed);
}

async fn converse(
    local: &Local,
    watch: &crate::sweeper::Watch<'_>,
    stream: &Socket<'_>,
    conv: &mut Conversation,
    buf: &mut ReadBuf,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let idle = local.milter.idle_timeout;
    let write_timeout = local.milter.write_timeout;
    loop {
        let draining = local.drain.fired.get();
        if draining {
            conv.set_refuse(true);
            if !conv.in_message() {
                return Ok(());
            }
        }
        let want = conv
            .decoder()
            .bytes_wanted(buf.filled())
            .max(READ_BUF_BYTES_INITIAL);
        adjust(&local.buffer_bytes, buf.reserve(want));
        watch.arm(idle);
        let read = stream.read(buf.spare());
        // Between messages a drain closes the connection at once; inside a
        // message the read is never abandoned, so no byte of it is lost.
        let n = if draining || conv.in_message() {
            read.await
        } else {
            let drained = async {
                local.drain.wait().await;
                None
            };
            match futures_lite::future::or(async { Some(read.await) }, drained).await {
                Some(r) => r,
                None => continue,
            }
        };
        watch.disarm();
        if watch.expired() {
            return Err("idle timeout".into());
        }
        let n = n.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return if conv.in_message() {
                Err("EOF inside a message".into())
            } else {
                Ok(())
            };
        }
        let started = Instant::now();
        buf.end += n;
        let (now_ms, utc_offset) = crate::evalload::now();
        conv.set_clock(now_ms, utc_offset);
        let mut output = Output::default();
        loop {
            let step = {
                let policy = local.policy.borrow();
                conv.process_deferred(buf.filled(), &policy, out)
            }
            .map_err(|e| e.to_string())?;
            buf.consume(step.consumed);
            output.absorb(&step);
            // an end of message to scan: in the shard's next batch
            let Some(scan) = conv.take_scan() else {
                break;
            };
            let judged = async { Some(local.judge(scan).await) };
            let late = async {
                sleep(idle).await;
                None
            };
            let verdict = futures_lite::future::or(judged, late)
                .await
                .ok_or("content scan timeout")?;
            conv.finish_scan(verdict, out, &mut output);
        }
        if !out.is_empty() {
            watch.arm(write_timeout);
            let written = stream.write_all(out).await;
            watch.disarm();
            if watch.expired() {
                return Err("write timeout".into());
            }
            written.map_err(|e| format!("write: {e}"))?;
            out.clear();
        }
        record(local, &output, started);
        if !conv.in_message() {
            adjust(&local.buffer_bytes, buf.shrink_if_idle());
        }
        if output.close {
            return Ok(());
        }
    }
}

/// End-of-message scans of the shard's milter connections, waiting for
/// [`scan_batcher`], each with the slot its verdict goes to.
#[derive(Default)]
struct ScanQueue {
    waiting: RefCell<std::collections::VecDeque<(PendingScan, Rc<ScanSlot>)>>,
    wake: crate::store::Notify,
}

/// Where [`scan_batcher`] leaves one verdict for its connection.
#[derive(Default)]
struct ScanSlot {
    verdict: RefCell<Option<ContentVerdict>>,
    ready: crate::store::Notify,
}

impl Local {
    /// The content verdict of `scan`, from the shard's next batch.
    async fn judge(&self, scan: PendingScan) -> ContentVerdict {
        let slot = Rc::new(ScanSlot::default());
        self.scans
            .waiting
            .borrow_mut()
            .push_back((scan, Rc::clone(&slot)));
        self.scans.wake.notify();
        loop {
            if let Some(verdict) = slot.verdict.borrow_mut().take() {
                return verdict;
            }
            slot.ready.wait().await;
        }
    }
}

/// Messages a shard scans together at most (the milter's [`scan_batcher`]
/// and the after-queue scanner task).
const SCAN_BATCH: usize = 32;

/// A batch takes no more messages once it holds this many bytes (it always
/// takes one): a shard answers nothing else while it scans, so a batch of
/// large messages is kept short.
const SCAN_BATCH_BYTES: usize = 1 << 20;

/// Whether a scan batch of `messages` holding `bytes` takes another.
pub(crate) fn batch_has_room(messages: usize, bytes: usize) -> bool {
    messages < SCAN_BATCH && bytes < SCAN_BATCH_BYTES
}

/// The shard's end-of-message scanner. It scans what the milter
/// connections have queued, up to [`SCAN_BATCH`] messages and about
/// [`SCAN_BATCH_BYTES`] in one batch
/// (`ContentFilter::judge_batch`: each rule database is read once per
/// batch, far cheaper per message than one message at a time). A message
/// alone is scanned at once; under load, the connections that reached end
/// of message while a batch ran make up the next one.
async fn scan_batcher(local: Rc<Local>) {
    loop {
        if local.scans.waiting.borrow().is_empty() {
            local.scans.wake.wait().await;
            continue;
        }
        // let the connections already woken queue their messages first
        futures_lite::future::yield_now().await;
        let (filter, jobs) = {
            let mut waiting = local.scans.waiting.borrow_mut();
            let Some(filter) = waiting.front().map(|(scan, _)| Arc::clone(&scan.filter)) else {
                continue;
            };
            // one filter per batch: scans pinned to an older policy (a
            // reload in between) wait for the next
            let mut jobs = Vec::new();
            let mut rest = std::collections::VecDeque::new();
            let mut bytes = 0usize;
            for job in waiting.drain(..) {
                if batch_has_room(jobs.len(), bytes) && Arc::ptr_eq(&job.0.filter, &filter) {
                    bytes += job.0.raw.len();
                    jobs.push(job);
                } else {
                    rest.push_back(job);
                }
            }
            *waiting = rest;
            (filter, jobs)
        };
        let messages: Vec<(&[u8], bool)> = jobs
            .iter()
            .map(|(scan, _)| (scan.raw.as_slice(), scan.truncated))
            .collect();
        let verdicts = local.scan_batch(&filter, &messages);
        for ((_, slot), verdict) in jobs.iter().zip(verdicts) {
            *slot.verdict.borrow_mut() = Some(verdict);
            slot.ready.notify();
        }
        glommio::yield_if_needed().await;
    }
}

fn record(local: &Local, output: &mb_engine::milter::Output, started: Instant) {
    if output.replies == 0 && output.messages == 0 {
        return;
    }
    let mut stats = local.stats.borrow_mut();
    if output.replies > 0 {
        let us = u64::try_from(started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = stats.latency_us.record(us.min(60_000_000));
    }
    stats.messages += u64::from(output.messages);
    stats.verdicts += output.verdicts;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_executor<F: std::future::Future<Output = ()> + 'static>(
        f: impl FnOnce() -> F + Send + 'static,
    ) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(f)
            .expect("executor starts")
            .join()
            .expect("executor finishes");
    }

    /// Pending on the first poll (waking itself), ready on the second, so the
    /// other branch of a race is polled and registers its waker.
    async fn pending_once() {
        let mut polled = false;
        futures_lite::future::poll_fn(|cx| {
            if polled {
                Poll::Ready(())
            } else {
                polled = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
    }

    /// Regression: a loop that races every accept against the drain signal
    /// leaked one waker per iteration until glommio's i16 task refcount
    /// overflowed and aborted mbd after 32,767 connections.
    #[test]
    fn drain_wait_holds_one_slot_however_often_it_is_raced() {
        on_executor(|| async {
            let signal = Rc::new(DrainSignal::default());
            for _ in 0..100_000 {
                let won = futures_lite::future::or(
                    async {
                        pending_once().await;
                        true
                    },
                    async {
                        signal.wait().await;
                        false
                    },
                )
                .await;
                assert!(won);
            }
            let slots = signal.slots.borrow().allocated();
            assert_eq!(slots, 1, "the race registered, and reused one slot");
            let waiter = {
                let s = Rc::clone(&signal);
                glommio::spawn_local(async move { s.wait().await })
            };
            glommio::yield_if_needed().await;
            signal.fire();
            waiter.await;
            assert!(signal.slots.borrow().iter().all(Option::is_none));
            assert_eq!(signal.slots.borrow().len(), 0, "every slot freed");
        });
    }

    #[test]
    fn read_buf_compacts_grows_and_shrinks() {
        let mut b = ReadBuf::new();
        assert_eq!(b.reserve(100), 0);
        b.spare()[..10].copy_from_slice(b"0123456789");
        b.end += 10;
        b.consume(4);
        assert_eq!(b.filled(), b"456789");
        let grown = b.reserve(200_000);
        assert!(grown > 0 && b.spare().len() >= 200_000);
        assert_eq!(b.filled(), b"456789", "compaction keeps unconsumed bytes");
        b.consume(6);
        assert!(b.shrink_if_idle() < 0);
        assert_eq!(b.data.len(), READ_BUF_BYTES_INITIAL);
    }
}
