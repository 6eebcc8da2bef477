//! The SMTP ingress of the after-queue path (Postfix `content_filter`,
//! port 10024): drives `mb_engine::smtp::server::Session` over one
//! connection and answers the end of each message only after the spool has
//! made it durable.
//!
//! ```text
//! read ─▶ Session::receive ─▶ write replies ─┐
//!   ▲          │ MessageComplete              │
//!   │          ▼                              │
//!   │   Store::append(Message, wait) ─▶ AckWait (group commit + fdatasync)
//!   │          │ durable: 250 queued as <id>, else 451 4.3.0
//!   └── Session::finish_message ─▶ feed the bytes kept after the dot
//! ```
//!
//! Waits on the client are bounded by `delivery.idle_timeout` through the
//! shard's sweeper (each read and each write); the session's own time budget
//! (`delivery.session_time_max`) is checked at every input. XFORWARD is
//! announced to loopback clients only.

use std::rc::Rc;
use std::time::Instant;

use mb_engine::smtp::{Envelope, Event, Output, Reply, Session, Settings};
use mb_engine::spool::{MessageRecord, Phase, Rcpt, RcptState, Record};

use crate::deliver::Runtime;
use crate::io::Socket;
use crate::shard::{adjust, Local, ReadBuf};
use crate::store::{queue_id, unix_ms, Stored};
use crate::sweeper::Watch;

/// Bytes read at a time (grows for DATA).
const READ_BYTES: usize = 64 * 1024;

/// The connection's I/O pieces, lent by the shard.
pub(crate) struct Io<'a, 'w> {
    pub(crate) watch: &'a Watch<'w>,
    pub(crate) stream: &'a Socket<'w>,
    pub(crate) buf: &'a mut ReadBuf,
}

/// Serves one ingress connection until QUIT, EOF, an error, a timeout or
/// drain.
pub(crate) async fn converse(
    local: &Local,
    rt: &Rc<Runtime>,
    io: &mut Io<'_, '_>,
    refuse: bool,
    loopback: bool,
) -> Result<(), String> {
    let cfg = &rt.setup.config;
    let mut settings = Settings::new(rt.setup.hostname.clone());
    settings.message_bytes_max = cfg.message_bytes_max;
    settings.rcpt_count_max = cfg.rcpt_count_max;
    settings.errors_max = cfg.errors_max;
    settings.session_time_max = cfg.session_time_max;
    settings.xforward = cfg.xforward && loopback;
    settings.chunking = cfg.chunking;
    settings.smtputf8 = cfg.smtputf8;
    settings.refuse = refuse || local.draining() || rt.store_broken();
    let epoch = Instant::now();
    let mut out = Output::default();
    let mut session = Session::new(settings, epoch.elapsed(), &mut out);
    write(cfg.idle_timeout, io, &mut out.reply).await?;
    if session.is_closed() {
        return Ok(());
    }
    let mut envelope: Option<Box<Envelope>> = None;
    loop {
        // Everything buffered first: a pipelined next command waits behind
        // the 250 of the message before it.
        loop {
            let progress = session.receive(io.buf.filled(), epoch.elapsed(), &mut out);
            io.buf.consume(progress.consumed);
            let mut complete = false;
            for event in out.events.drain(..) {
                match event {
                    Event::Envelope(e) => envelope = Some(e),
                    Event::MessageAborted(_) => envelope = None,
                    Event::MessageComplete { .. } => complete = true,
                }
            }
            write(cfg.idle_timeout, io, &mut out.reply).await?;
            if complete {
                let reply = match envelope.take() {
                    Some(env) => spool(local, rt, &env, std::mem::take(&mut out.data)).await,
                    None => Reply::spool_failed(),
                };
                session.finish_message(&reply, &mut out);
                write(cfg.idle_timeout, io, &mut out.reply).await?;
                continue;
            }
            if progress.close {
                return Ok(());
            }
            break;
        }
        let draining = local.draining();
        if draining && !session.in_transaction() {
            session.drain(&mut out);
            write(cfg.idle_timeout, io, &mut out.reply).await?;
            return Ok(());
        }
        adjust(&local.buffer_bytes, io.buf.reserve(READ_BYTES));
        io.watch.arm(cfg.idle_timeout);
        let read = io.stream.read(io.buf.spare());
        // Between messages a drain closes the connection (with 421); inside
        // one the read is never abandoned.
        let n = if draining || session.in_transaction() {
            Some(read.await)
        } else {
            futures_lite::future::or(async { Some(read.await) }, async {
                local.drained().await;
                None
            })
            .await
        };
        io.watch.disarm();
        if io.watch.expired() {
            session.disconnected(&mut out);
            return Err("idle timeout".into());
        }
        let Some(n) = n else { continue };
        let n = n.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            session.disconnected(&mut out);
            return if envelope.is_some() {
                Err("EOF inside a message".into())
            } else {
                Ok(())
            };
        }
        io.buf.end += n;
        if !session.in_transaction() {
            adjust(&local.buffer_bytes, io.buf.shrink_if_idle());
        }
    }
}

/// Writes and clears `reply`, bounded by `limit`.
async fn write(
    limit: std::time::Duration,
    io: &mut Io<'_, '_>,
    reply: &mut Vec<u8>,
) -> Result<(), String> {
    if reply.is_empty() {
        return Ok(());
    }
    io.watch.arm(limit);
    let written = io.stream.write_all(reply).await;
    io.watch.disarm();
    if io.watch.expired() {
        return Err("write timeout".into());
    }
    written.map_err(|e| format!("write: {e}"))?;
    reply.clear();
    Ok(())
}

/// Appends the message to the spool and waits until it is durable: the
/// reply for the final dot.
async fn spool(local: &Local, rt: &Rc<Runtime>, env: &Envelope, body: Vec<u8>) -> Reply {
    let store = &rt.store;
    let id = store.new_id();
    let stored = Rc::new(Stored {
        received_unix_ms: unix_ms(),
        sender: env.sender.clone(),
        rcpts: env.recipients.clone(),
        facts: env
            .facts()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        body,
    });
    let record = Record::Message(MessageRecord {
        received_unix_ms: stored.received_unix_ms,
        phase: Phase::Received,
        attempts: 0,
        next_try_unix_ms: 0,
        scan: None,
        sender: stored.sender.as_bytes(),
        rcpts: stored
            .rcpts
            .iter()
            .map(|r| Rcpt {
                address: r.as_bytes(),
                state: RcptState::Pending,
            })
            .collect(),
        facts: stored
            .facts
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect(),
        body: &stored.body,
    });
    let wait = match store.append(id, &record, true) {
        Ok(Some(wait)) => wait,
        Ok(None) => unreachable!("append with wait returns a waiter"),
        Err(e) => {
            log::warn!("Ingress on shard {}: message not spooled: {e}", local.id);
            rt.count_received(false);
            return Reply::spool_failed();
        }
    };
    drop(record);
    store.cache(id, Rc::clone(&stored));
    if wait.await {
        rt.count_received(true);
        rt.received(id);
        Reply::queued(&queue_id(id))
    } else {
        rt.count_received(false);
        Reply::spool_failed()
    }
}
