//! The per-connection milter conversation: commands in, replies out.
//!
//! [`Conversation::process`] takes the bytes a runtime has read, decodes every
//! complete frame, drives the state machine and appends the replies to an
//! output buffer. It never blocks, never performs I/O and never panics on input;
//! a protocol violation is a [`ConversationError`] after which the runtime
//! closes the connection (Postfix then applies `milter_default_action`, which
//! defaults to tempfail, so mail is deferred, not lost).
//!
//! States (one connection may carry several SMTP sessions via QUIT_NC, and one
//! session several messages, separated by ABORT):
//!
//! ```text
//! AwaitOptNeg --OPTNEG--> Session --MAIL--> Message --EOM/ABORT--> Session
//!                            ^  \--QUIT_NC (reset session facts)--/
//! any --QUIT--> Closed
//! ```
//!
//! Negotiation asks only for replies where a decision is made: MAIL and RCPT
//! (sender and recipient rules) and end of message (the verdict). CONNECT,
//! HELO, headers, end of headers and body chunks are negotiated as no-reply
//! (`NR_*`), and DATA and unknown commands are not sent at all, so Postfix
//! streams the message instead of waiting on each packet. An MTA that does not
//! offer an `NR_*` flag gets a CONTINUE for that event.

use std::net::IpAddr;
use std::sync::Arc;

use super::command::{self, Command, CommandError};
use super::frame::{FrameDecoder, FrameError, RawFrame};
use super::reply::{Modification, Reply};
use super::{actions, protocol};
use crate::ctl_api::VerdictCounts;
use crate::eval::{Ask, Facts};
use crate::filter::content::{ContentFilter, ContentVerdict, ScanPool};
use crate::limits::{MILTER_BODY_CHUNK_BYTES_MAX, MILTER_MACRO_BYTES_MAX, RCPT_COUNT_MAX};
use crate::policy::{Deferred, Events, MessageFacts, Outcome, Policy};
use crate::verdict::{Action, Reason, SmtpText, VerdictKind};

/// Step flags we ask for (masked by what the MTA offers).
pub const PROTOCOL_WANTED: u32 = protocol::NO_DATA
    | protocol::NO_UNKNOWN
    | protocol::NR_DATA
    | protocol::NR_UNKNOWN
    | protocol::NR_CONNECT
    | protocol::NR_HELO
    | protocol::NR_HEADER
    | protocol::NR_EOH
    | protocol::NR_BODY;

/// Step flags for a policy: [`PROTOCOL_WANTED`] plus `NO_*` for every event the
/// policy does not look at. Fixed per connection at OPTNEG; a reload that needs
/// more events applies to new connections (Postfix opens one per SMTP session).
#[must_use]
pub fn protocol_for(events: Events) -> u32 {
    let mut flags = PROTOCOL_WANTED;
    if !events.connect {
        flags |= protocol::NO_CONNECT;
    }
    if !events.helo {
        flags |= protocol::NO_HELO;
    }
    if !events.headers {
        flags |= protocol::NO_HEADERS | protocol::NO_EOH;
    }
    if !events.body {
        flags |= protocol::NO_BODY;
    }
    flags
}

/// Actions we ask for (masked by what the MTA offers).
pub const ACTIONS_WANTED: u32 = actions::ADD_HEADERS
    | actions::CHANGE_BODY
    | actions::ADD_RCPT
    | actions::DELETE_RCPT
    | actions::CHANGE_HEADERS
    | actions::QUARANTINE
    | actions::CHANGE_FROM
    | actions::ADD_RCPT_PAR;

/// Oldest protocol version we talk to (v2 is the oldest Postfix speaks).
pub const VERSION_MIN: u32 = 2;

/// A protocol violation: the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    /// The frame layer failed (too large, empty).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A command could not be decoded.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A command arrived in a state where it is not allowed.
    #[error("milter command {command} not allowed in state {state}")]
    UnexpectedCommand {
        /// The command's name.
        command: &'static str,
        /// The state's name.
        state: &'static str,
    },
    /// The MTA offered a protocol version we do not speak.
    #[error("milter protocol version {offered} offered, at least {VERSION_MIN} needed")]
    Version {
        /// Offered version.
        offered: u32,
    },
}

/// What one [`Conversation::process`] call did, for the runtime's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Output {
    /// Bytes of input consumed (complete frames); drop them from the buffer.
    pub consumed: usize,
    /// The MTA said QUIT: write what is in the output buffer, then close.
    pub close: bool,
    /// Replies appended to the output buffer (modifications not counted).
    pub replies: u32,
    /// Messages that ended (verdict given, or aborted after MAIL).
    pub messages: u32,
    /// Verdicts given, by kind (MAIL/RCPT refusals and end-of-message).
    pub verdicts: VerdictCounts,
}

impl Output {
    /// Adds the counts of a later call's `other` to these (for a runtime
    /// that calls [`Conversation::process_deferred`] several times per
    /// read). `consumed` is summed too.
    pub fn absorb(&mut self, other: &Output) {
        self.consumed += other.consumed;
        self.close |= other.close;
        self.replies += other.replies;
        self.messages += other.messages;
        self.verdicts += other.verdicts;
    }
}

/// Connection-level options fixed at construction.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Shard serving this connection (goes into the added header).
    pub shard: u16,
    /// Largest frame accepted.
    pub frame_bytes_max: u32,
    /// Refuse every transaction with a 4xx (connection over the shard's
    /// ceiling, or daemon draining): the MTA defers and retries later.
    pub refuse: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitOptNeg,
    Session,
    Message,
    Closed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::AwaitOptNeg => "await-optneg",
            State::Session => "session",
            State::Message => "message",
            State::Closed => "closed",
        }
    }
}

/// Facts about the current message, reset at MAIL and ABORT.
#[derive(Debug, Default)]
struct Message {
    policy: Option<Arc<Policy>>,
    sender: String,
    recipients: u32,
    /// The accepted recipients, when the policy has a content filter.
    recipient_list: Vec<String>,
    body_bytes: u64,
    headers: u32,
    deferred: Vec<(Deferred, Reason)>,
    /// An envelope refusal already answered; the MTA will not send EOM for it
    /// unless other recipients were accepted.
    refused_sender: bool,
    /// An allow rule of `[policy]` matched the sender at MAIL.
    sender_allowed: bool,
    /// The message as the content filter sees it (headers rebuilt from the
    /// HEADER packets, then the body), when the policy has a filter.
    raw: Option<RawMessage>,
}

/// A message buffered for the content scan, up to the filter's
/// `scan_bytes_max`.
#[derive(Debug, Default)]
struct RawMessage {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl RawMessage {
    fn push(&mut self, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if self.truncated || self.bytes.len() + len > self.cap {
            self.truncated = true;
            let room = self.cap.saturating_sub(self.bytes.len());
            let mut left = room;
            for p in parts {
                let take = p.len().min(left);
                self.bytes.extend_from_slice(&p[..take]);
                left -= take;
            }
            return;
        }
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
    }
}

/// One milter connection's state.
#[derive(Debug)]
pub struct Conversation {
    settings: Settings,
    decoder: FrameDecoder,
    state: State,
    version: u32,
    actions: u32,
    protocol: u32,
    /// Macros of the latest packet per stage (raw `name\0value\0` pairs).
    macros: Vec<(u8, Vec<u8>)>,
    client_address: String,
    client_ip: Option<IpAddr>,
    client_name: String,
    helo: String,
    /// Messages finished in this SMTP session.
    messages: u32,
    /// The runtime's wall clock: Unix milliseconds and the local UTC offset.
    clock: (u64, i16),
    message: Message,
    /// End of message reached, its content scan handed out by
    /// [`Conversation::take_scan`] and not yet answered by
    /// [`Conversation::finish_scan`]: nothing more is decoded until then.
    scan: ScanStep,
}

/// Where a deferred end-of-message scan stands.
#[derive(Debug, Default)]
enum ScanStep {
    /// No scan outstanding.
    #[default]
    None,
    /// The scan is ready to be taken.
    Ready(PendingScan),
    /// The caller took the scan; its verdict is awaited.
    Taken,
}

/// A message's content scan, handed to the runtime
/// ([`Conversation::process_deferred`]) so that it can scan several
/// connections' messages in one batch (`ContentFilter::judge_batch`).
#[derive(Debug)]
pub struct PendingScan {
    /// The filter of the policy pinned at MAIL.
    pub filter: Arc<ContentFilter>,
    /// The message as the filter sees it, up to its `scan_bytes_max`.
    pub raw: Vec<u8>,
    /// The message was longer than `raw`.
    pub truncated: bool,
}

/// How the content scan runs at end of message.
enum ScanMode<'a> {
    /// At once, on this scratch space.
    Now(&'a mut ScanPool),
    /// Handed to the caller ([`Conversation::take_scan`]).
    Deferred,
}

impl Conversation {
    /// A new connection, waiting for OPTNEG.
    #[must_use]
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            decoder: FrameDecoder::new(settings.frame_bytes_max),
            state: State::AwaitOptNeg,
            version: 0,
            actions: 0,
            protocol: 0,
            macros: Vec::new(),
            client_address: String::new(),
            client_ip: None,
            client_name: String::new(),
            helo: String::new(),
            messages: 0,
            clock: (0, 0),
            message: Message::default(),
            scan: ScanStep::None,
        }
    }

    /// Sets the wall clock eval decides with (Unix milliseconds, local offset
    /// from UTC in minutes). The engine has no clock: the runtime sets it
    /// before [`Conversation::process`].
    pub fn set_clock(&mut self, unix_ms: u64, utc_offset_minutes: i16) {
        self.clock = (unix_ms, utc_offset_minutes);
    }

    /// The frame decoder (so the runtime can size its reads).
    #[must_use]
    pub fn decoder(&self) -> &FrameDecoder {
        &self.decoder
    }

    /// Whether a message is in progress (MAIL seen, no EOM/ABORT yet). A
    /// draining runtime closes idle connections only when this is false.
    #[must_use]
    pub fn in_message(&self) -> bool {
        self.state == State::Message
    }

    /// Refuse every later transaction with 4xx (used when draining); a
    /// message already past MAIL still gets its verdict.
    pub fn set_refuse(&mut self, refuse: bool) {
        self.settings.refuse = refuse;
    }

    /// Negotiated `(version, actions, protocol)`; zeros before OPTNEG.
    #[must_use]
    pub fn negotiated(&self) -> (u32, u32, u32) {
        (self.version, self.actions, self.protocol)
    }

    /// The client address from CONNECT (empty before).
    #[must_use]
    pub fn client_address(&self) -> &str {
        &self.client_address
    }

    /// The HELO name (empty before HELO).
    #[must_use]
    pub fn helo(&self) -> &str {
        &self.helo
    }

    /// Value of macro `name` (e.g. `i`, `{auth_authen}`) from the latest macro
    /// packet of any stage, newest stage first.
    #[must_use]
    pub fn macro_value(&self, name: &str) -> Option<&[u8]> {
        self.macros.iter().rev().find_map(|(_, pairs)| {
            command::macro_pairs(pairs)
                .find(|(n, _)| *n == name.as_bytes())
                .map(|(_, v)| v)
        })
    }

    /// Decodes and handles every complete frame at the front of `input`,
    /// appending replies to `out`. `policy` is the shard's current snapshot; it
    /// is pinned at MAIL for the rest of the message.
    ///
    /// # Errors
    /// A [`ConversationError`] on any protocol violation; replies produced for
    /// earlier frames of the same call are still in `out`, and `consumed` is
    /// not reported, because the connection is closed anyway.
    pub fn process(
        &mut self,
        input: &[u8],
        policy: &Arc<Policy>,
        out: &mut Vec<u8>,
    ) -> Result<Output, ConversationError> {
        self.process_with(input, policy, &mut ScanPool::default(), out)
    }

    /// [`Conversation::process`] with the shard's scan scratch space, which
    /// the content filter (if the policy has one) uses at end of message.
    ///
    /// # Errors
    /// As [`Conversation::process`].
    pub fn process_with(
        &mut self,
        input: &[u8],
        policy: &Arc<Policy>,
        pool: &mut ScanPool,
        out: &mut Vec<u8>,
    ) -> Result<Output, ConversationError> {
        self.process_in(input, policy, &mut ScanMode::Now(pool), out)
    }

    /// [`Conversation::process`], except that an end of message whose
    /// content needs scanning stops the call: [`Conversation::take_scan`]
    /// gives the scan, and [`Conversation::finish_scan`] the verdict, which
    /// writes the end-of-message reply. Until then nothing more is decoded
    /// (`consumed` stops after the end-of-message frame). The runtime scans
    /// the messages of several connections together this way.
    ///
    /// # Errors
    /// As [`Conversation::process`].
    pub fn process_deferred(
        &mut self,
        input: &[u8],
        policy: &Arc<Policy>,
        out: &mut Vec<u8>,
    ) -> Result<Output, ConversationError> {
        self.process_in(input, policy, &mut ScanMode::Deferred, out)
    }

    /// The scan an end of message is waiting for (once; see
    /// [`Conversation::process_deferred`]).
    pub fn take_scan(&mut self) -> Option<PendingScan> {
        match std::mem::take(&mut self.scan) {
            ScanStep::Ready(scan) => {
                self.scan = ScanStep::Taken;
                Some(scan)
            }
            other => {
                self.scan = other;
                None
            }
        }
    }

    /// Ends the message waiting for its scan with `verdict` (from the
    /// filter of [`PendingScan::filter`]): appends the end-of-message reply
    /// and modifications to `out` and counts them in `output`. Without a
    /// scan outstanding, it does nothing.
    pub fn finish_scan(&mut self, verdict: ContentVerdict, out: &mut Vec<u8>, output: &mut Output) {
        if matches!(self.scan, ScanStep::None) {
            return;
        }
        self.scan = ScanStep::None;
        self.answer_end_of_message(Some(verdict), out, output);
    }

    fn process_in(
        &mut self,
        input: &[u8],
        policy: &Arc<Policy>,
        mode: &mut ScanMode<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Output, ConversationError> {
        let mut output = Output::default();
        while !output.close && matches!(self.scan, ScanStep::None) {
            let Some((frame, used)) = self.decoder.decode(&input[output.consumed..])? else {
                break;
            };
            self.handle(frame, policy, mode, out, &mut output)?;
            output.consumed += used;
        }
        Ok(output)
    }

    fn unexpected(&self, command: &Command<'_>) -> ConversationError {
        ConversationError::UnexpectedCommand {
            command: command.name(),
            state: self.state.name(),
        }
    }

    fn handle(
        &mut self,
        frame: RawFrame<'_>,
        policy: &Arc<Policy>,
        mode: &mut ScanMode<'_>,
        out: &mut Vec<u8>,
        output: &mut Output,
    ) -> Result<(), ConversationError> {
        let command = Command::decode(frame)?;
        match (self.state, &command) {
            (State::Closed, _) => return Err(self.unexpected(&command)),
            (_, Command::Quit) => {
                self.end_message(output, None);
                self.state = State::Closed;
                output.close = true;
            }
            (
                State::AwaitOptNeg,
                Command::OptNeg {
                    version,
                    actions,
                    protocol,
                },
            ) => {
                self.negotiate(*version, *actions, *protocol, policy, out, output)?;
            }
            (State::AwaitOptNeg, _) | (_, Command::OptNeg { .. }) => {
                return Err(self.unexpected(&command));
            }
            (_, Command::Macro { stage, pairs }) => self.remember_macros(*stage, pairs),
            (_, Command::Abort) => self.end_message(output, None),
            (_, Command::QuitNewConnection) => {
                self.end_message(output, None);
                self.client_address.clear();
                self.client_ip = None;
                self.client_name.clear();
                self.helo.clear();
                self.messages = 0;
                self.macros.clear();
                self.state = State::Session;
            }
            (
                State::Session,
                Command::Connect {
                    hostname, address, ..
                },
            ) => {
                self.client_address = String::from_utf8_lossy(address).into_owned();
                self.client_ip = parse_client_ip(&self.client_address);
                self.client_name = String::from_utf8_lossy(hostname).into_owned();
                self.reply_if_wanted(protocol::NR_CONNECT, out, output);
            }
            (State::Session, Command::Helo { name }) => {
                self.helo = String::from_utf8_lossy(name).into_owned();
                self.reply_if_wanted(protocol::NR_HELO, out, output);
            }
            (_, Command::Unknown(_)) => self.reply_if_wanted(protocol::NR_UNKNOWN, out, output),
            (State::Session | State::Message, Command::Mail { args }) => {
                // A MAIL without ABORT for the previous message: treat the old
                // one as aborted, as libmilter does.
                self.end_message(output, None);
                self.mail(args, policy, out, output);
            }
            (State::Message, Command::Rcpt { args }) => self.rcpt(args, out, output),
            (State::Message, Command::Data) => {
                self.reply_if_wanted(protocol::NR_DATA, out, output);
            }
            (State::Message, Command::Header { name, value }) => {
                self.message.headers = self.message.headers.saturating_add(1);
                if let Some(raw) = &mut self.message.raw {
                    // Postfix strips the space after the colon unless
                    // HDR_LEADSPC is negotiated; folded lines come with LF.
                    let space: &[u8] = if value.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                        b""
                    } else {
                        b" "
                    };
                    raw.push(&[name, b":", space, value, b"\r\n"]);
                }
                self.reply_if_wanted(protocol::NR_HEADER, out, output);
            }
            (State::Message, Command::EndOfHeaders) => {
                if let Some(raw) = &mut self.message.raw {
                    raw.push(&[b"\r\n"]);
                }
                self.reply_if_wanted(protocol::NR_EOH, out, output);
            }
            (State::Message, Command::Body(chunk)) => {
                self.message.body_bytes += chunk.len() as u64;
                if let Some(raw) = &mut self.message.raw {
                    raw.push(&[chunk]);
                }
                self.reply_if_wanted(protocol::NR_BODY, out, output);
            }
            (State::Message, Command::EndOfMessage(chunk)) => {
                self.message.body_bytes += chunk.len() as u64;
                if let Some(raw) = &mut self.message.raw {
                    raw.push(&[chunk]);
                }
                self.end_of_message(mode, out, output);
            }
            (_, Command::Connect { .. } | Command::Helo { .. }) | (State::Session, _) => {
                return Err(self.unexpected(&command))
            }
        }
        Ok(())
    }

    fn negotiate(
        &mut self,
        version: u32,
        offered_actions: u32,
        offered_protocol: u32,
        policy: &Policy,
        out: &mut Vec<u8>,
        output: &mut Output,
    ) -> Result<(), ConversationError> {
        if version < VERSION_MIN {
            return Err(ConversationError::Version { offered: version });
        }
        self.version = version.min(super::VERSION);
        self.actions = ACTIONS_WANTED & offered_actions;
        self.protocol = protocol_for(policy.events()) & offered_protocol;
        Reply::OptNeg {
            version: self.version,
            actions: self.actions,
            protocol: self.protocol,
            symlists: Vec::new(),
        }
        .encode(out);
        output.replies += 1;
        self.state = State::Session;
        Ok(())
    }

    fn remember_macros(&mut self, stage: u8, pairs: &[u8]) {
        let pairs = &pairs[..pairs.len().min(MILTER_MACRO_BYTES_MAX)];
        match self.macros.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, stored)) => {
                stored.clear();
                stored.extend_from_slice(pairs);
            }
            None => self.macros.push((stage, pairs.to_vec())),
        }
        // Keep the newest stage last so `macro_value` prefers it.
        if let Some(pos) = self.macros.iter().position(|(s, _)| *s == stage) {
            let entry = self.macros.remove(pos);
            self.macros.push(entry);
        }
    }

    fn reply_if_wanted(&self, no_reply_flag: u32, out: &mut Vec<u8>, output: &mut Output) {
        if self.protocol & no_reply_flag == 0 {
            Reply::Continue.encode(out);
            output.replies += 1;
        }
    }

    fn refusal_reply(action: &Action) -> Reply {
        match action {
            Action::Reject(SmtpText { code, text }) | Action::TempFail(SmtpText { code, text }) => {
                Reply::ReplyCode {
                    code: *code,
                    text: text.clone(),
                }
            }
            Action::Accept | Action::Discard | Action::Quarantine(_) => Reply::Continue,
        }
    }

    fn mail(&mut self, args: &[u8], policy: &Arc<Policy>, out: &mut Vec<u8>, output: &mut Output) {
        let mut args = command::args(args);
        let sender = bare_address(args.next().unwrap_or_default());
        let declared = args.find_map(|a| {
            let (key, value) = a.split_at(a.iter().position(|&b| b == b'=')?);
            key.eq_ignore_ascii_case(b"SIZE")
                .then(|| std::str::from_utf8(&value[1..]).ok()?.parse::<u64>().ok())
                .flatten()
        });
        self.state = State::Message;
        self.message = Message {
            policy: Some(Arc::clone(policy)),
            raw: policy.filter().map(|f| RawMessage {
                bytes: Vec::new(),
                cap: f.scan_bytes_max(),
                truncated: false,
            }),
            ..Message::default()
        };
        self.message.sender = sender;
        if self.settings.refuse {
            self.message.refused_sender = true;
            self.reply_refusal(&busy(), out, output);
            return;
        }
        let decision = policy.mail(&self.message.sender, declared);
        match decision.outcome {
            Outcome::Refuse(action) => {
                self.message.refused_sender = true;
                self.reply_refusal(&action, out, output);
            }
            Outcome::Defer(deferred) => {
                if let Some(reason) = decision.reason {
                    self.message.deferred.push((deferred, reason));
                }
                self.reply_if_wanted(protocol::NR_MAIL, out, output);
            }
            Outcome::Allow => {
                self.message.sender_allowed = true;
                self.reply_if_wanted(protocol::NR_MAIL, out, output);
            }
            Outcome::Continue => {
                self.reply_if_wanted(protocol::NR_MAIL, out, output);
            }
        }
    }

    fn reply_refusal(&self, action: &Action, out: &mut Vec<u8>, output: &mut Output) {
        Self::refusal_reply(action).encode(out);
        output.replies += 1;
        output.verdicts.record(action.kind());
    }

    fn rcpt(&mut self, args: &[u8], out: &mut Vec<u8>, output: &mut Output) {
        let recipient = bare_address(command::args(args).next().unwrap_or_default());
        if self.macro_value("{rcpt_mailer}") == Some(b"error") {
            // With RCPT_REJ an MTA also reports recipients it rejected itself
            // (Postfix: `{rcpt_mailer}=error`); they are not ours to judge.
            self.reply_if_wanted(protocol::NR_RCPT, out, output);
            return;
        }
        if self.message.refused_sender {
            // Postfix does not send RCPT after a refused MAIL; another MTA
            // might. Refuse again rather than accept what MAIL refused.
            self.reply_refusal(&busy(), out, output);
            return;
        }
        if self.message.recipients as usize >= RCPT_COUNT_MAX {
            let action = Action::TempFail(SmtpText {
                code: 452,
                text: "4.5.3 Too many recipients".to_owned(),
            });
            self.reply_refusal(&action, out, output);
            return;
        }
        let Some(policy) = self.message.policy.clone() else {
            unreachable!("a message always pins a policy at MAIL");
        };
        let decision = policy.rcpt(&recipient);
        let mut deferred = Vec::new();
        match decision.outcome {
            Outcome::Refuse(action) => {
                self.reply_refusal(&action, out, output);
                return;
            }
            Outcome::Defer(d) => deferred.extend(decision.reason.map(|r| (d, r))),
            Outcome::Continue | Outcome::Allow => {}
        }
        if let Some(eval) = self.eval_rcpt(&policy, &recipient) {
            match eval.outcome {
                Outcome::Refuse(action) => {
                    self.reply_refusal(&action, out, output);
                    return;
                }
                Outcome::Defer(d) => {
                    deferred.extend(eval.reasons.into_iter().last().map(|r| (d, r)))
                }
                Outcome::Continue | Outcome::Allow => {}
            }
        }
        self.message.recipients += 1;
        if policy.filter().is_some() {
            // Their domains pick the content filter's per-domain profiles.
            self.message.recipient_list.push(recipient);
        }
        self.message.deferred.extend(deferred);
        self.reply_if_wanted(protocol::NR_RCPT, out, output);
    }

    /// The eval tree's decision for `recipient`, when the policy has a tree.
    fn eval_rcpt(&self, policy: &Policy, recipient: &str) -> Option<crate::eval::EvalDecision> {
        policy.eval()?;
        let text = |name: &str| {
            self.macro_value(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .unwrap_or("")
        };
        let tls = !text("{tls_version}").is_empty() || !text("{cipher}").is_empty();
        let ask = Ask {
            facts: Facts {
                client_ip: self.client_ip,
                client_name: &self.client_name,
                helo: &self.helo,
                sender: &self.message.sender,
                recipient,
                recipient_count: self.message.recipients,
                message_count: self.messages,
                sasl_user: text("{auth_authen}"),
                tls,
                country: None,
                continent: None,
                unix_time: self.clock.0 / 1000,
                utc_offset_minutes: self.clock.1,
            },
            first_recipient: self.message.recipients == 0,
            sender_allowed: self.message.sender_allowed,
            now_ms: self.clock.0,
            trace: false,
        };
        policy.eval_rcpt(&ask)
    }

    fn end_of_message(&mut self, mode: &mut ScanMode<'_>, out: &mut Vec<u8>, output: &mut Output) {
        let Some(policy) = self.message.policy.clone() else {
            unreachable!("a message always pins a policy at MAIL");
        };
        // Only a refused MAIL refuses the end: a drain that starts inside a
        // transaction (`set_refuse` after MAIL) lets that message finish.
        if self.message.refused_sender {
            self.reply_refusal(&busy(), out, output);
            self.end_message(output, None);
            return;
        }
        // The scan is skipped when the message is refused anyway.
        let content = match (policy.filter(), self.message.raw.take()) {
            (Some(filter), Some(raw)) if self.message.body_bytes <= policy.message_bytes_max() => {
                match mode {
                    ScanMode::Now(pool) => Some(pool.judge(filter, &raw.bytes, raw.truncated)),
                    ScanMode::Deferred => {
                        self.scan = ScanStep::Ready(PendingScan {
                            filter: Arc::clone(filter),
                            raw: raw.bytes,
                            truncated: raw.truncated,
                        });
                        return;
                    }
                }
            }
            _ => None,
        };
        self.answer_end_of_message(content, out, output);
    }

    /// The end-of-message verdict for the scan's result `content` (`None`:
    /// not scanned), its modifications and reply.
    fn answer_end_of_message(
        &mut self,
        content: Option<ContentVerdict>,
        out: &mut Vec<u8>,
        output: &mut Output,
    ) {
        let Some(policy) = self.message.policy.clone() else {
            unreachable!("a message always pins a policy at MAIL");
        };
        let facts = MessageFacts {
            body_bytes: self.message.body_bytes,
            deferred: std::mem::take(&mut self.message.deferred),
            score: content.as_ref().map_or(0.0, |c| c.result.score),
            content,
            recipients: std::mem::take(&mut self.message.recipient_list),
            shard: self.settings.shard,
        };
        let verdict = policy.end_of_message(&facts);
        let mut action = verdict.action;
        if matches!(action, Action::Quarantine(_)) && self.actions & actions::QUARANTINE == 0 {
            // The MTA cannot hold mail: keep it with the sender instead of
            // letting it through unreviewed.
            action = Action::TempFail(SmtpText {
                code: 451,
                text: "4.7.1 Message held by policy, but the MTA cannot quarantine".to_owned(),
            });
        }
        if matches!(action, Action::Accept | Action::Quarantine(_)) {
            for modification in &verdict.modifications {
                self.send_modification(modification, out);
            }
        }
        let final_reply = match &action {
            Action::Accept => Reply::Accept,
            Action::Quarantine(reason) => {
                Modification::Quarantine(reason.clone()).encode(out);
                Reply::Accept
            }
            Action::Discard => Reply::Discard,
            Action::Reject(_) | Action::TempFail(_) => Self::refusal_reply(&action),
        };
        final_reply.encode(out);
        output.replies += 1;
        self.end_message(output, Some(action.kind()));
    }

    /// Sends a modification if its action was negotiated; a body replacement
    /// is split into chunks the MTA accepts.
    fn send_modification(&self, modification: &Modification, out: &mut Vec<u8>) {
        if self.actions & modification.action_flag() == 0 {
            return;
        }
        match modification {
            Modification::ReplaceBody(body) if body.len() > MILTER_BODY_CHUNK_BYTES_MAX => {
                for chunk in body.chunks(MILTER_BODY_CHUNK_BYTES_MAX) {
                    Modification::ReplaceBody(chunk.to_vec()).encode(out);
                }
            }
            _ => modification.encode(out),
        }
    }

    /// Ends the current message, if any, counting it once.
    fn end_message(&mut self, output: &mut Output, verdict: Option<VerdictKind>) {
        if self.state != State::Message {
            return;
        }
        if let Some(kind) = verdict {
            output.verdicts.record(kind);
        }
        output.messages += 1;
        self.messages = self.messages.saturating_add(1);
        self.message = Message::default();
        self.state = State::Session;
    }
}

/// The 4xx given while over the connection ceiling or draining.
fn busy() -> Action {
    Action::TempFail(SmtpText {
        code: 451,
        text: "4.3.2 Service busy, try again later".to_owned(),
    })
}

/// The client address of CONNECT: `192.0.2.1`, `2001:db8::1` or Postfix's
/// `IPv6:2001:db8::1`; `None` for unknown or unix-socket clients.
fn parse_client_ip(text: &str) -> Option<IpAddr> {
    let text = text.strip_prefix("IPv6:").unwrap_or(text);
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse().ok()
}

/// `<a@b>` → `a@b`; `a@b` (sendmail/pickup sends no brackets) stays.
fn bare_address(raw: &[u8]) -> String {
    let raw = raw
        .strip_prefix(b"<")
        .and_then(|r| r.strip_suffix(b">"))
        .unwrap_or(raw);
    String::from_utf8_lossy(raw).into_owned()
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
