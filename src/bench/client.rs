//! One bench connection: its socket, where it is in its life (connecting, handshaking, open,
//! closing), its read and write buffers, and its sending state. The worker owns many of these
//! and drives them from its poll loop.
//!
//! The receive path is built to cost less than the server's send path, so that one bench core
//! keeps up with one server core: each readiness is one large `read` into the worker's shared
//! buffer ([`Tools::rx`]), frames are walked in place there, the token is found with `memchr`,
//! and deliveries are tallied in plain worker-local counters ([`Tally`]). A connection keeps
//! only the tail of a frame a read cut short (`pending`, empty and unallocated for most), so an
//! idle bench connection holds no read buffer. Pings are answered; everything that is not a
//! token is ignored.
//!
//! With `--deflate` a compressed frame (RSV1) is inflated into the worker's one reused buffer
//! ([`Inflating`]) before its token is looked for; every byte read is counted
//! ([`Tally::wire_bytes`]), so that a run reports the bytes on the wire per delivery.

use std::io::{self, Write};
use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Interest, Poll, Token as MioToken};

use super::handshake;
use super::payload::{self, Inflating};
use super::shared::{Pace, Plan, Shared};
use super::socket::{connect_from, describe, read_some};
use super::text;
use super::wire::{self, Token};
use crate::rng::Rng;
use crate::tls::client::ClientStream;
use crate::wire::push_client_frame;

/// The worker's read buffer: one read takes everything a busy connection has queued.
pub const READ_BUFFER: usize = 256 * 1024;
/// Longest handshake response the bench waits for the end of.
const MAX_HANDSHAKE_RESPONSE: usize = 64 * 1024;
/// Largest server frame the bench accepts.
const MAX_FRAME: usize = payload::MAX_MESSAGE;

pub enum Stage {
    Connecting,
    Handshaking,
    Open,
    /// Our close frame is queued or sent; waiting for the server's close and end of stream.
    Closing {
        deadline_ns: u64,
    },
    Dead,
}

/// A client that sends: its global id and how far it got.
pub struct Sender {
    pub id: u32,
    next_seq: u64,
    acked: u64,
    pub next_due_ns: u64,
}

/// What a worker lends its connections: the random generator (masks, text), the buffer
/// messages are built in, the buffer every read lands in, and the inflater with its buffer.
pub struct Tools {
    pub rng: Rng,
    pub scratch: Vec<u8>,
    pub rx: Vec<u8>,
    pub inflating: Inflating,
}

/// What a worker saw since it last published it to [`Shared`]: plain counters, so a delivery
/// costs no atomic operation shared between threads.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub delivered: u64,
    pub delivered_counted: u64,
    /// Bytes read from the sockets: frames as they came, compressed or not (TLS's own bytes
    /// aside), handshake responses included.
    pub wire_bytes: u64,
    /// Bytes of the data messages in them, after inflating.
    pub message_bytes: u64,
    /// Handshakes completed, and those that agreed on `permessage-deflate`.
    pub handshakes: u64,
    pub handshakes_deflate: u64,
}

/// Where received deliveries go: the tallies and this worker's latency histogram.
pub struct Recorder<'a> {
    pub shared: &'a Shared,
    pub tally: &'a mut Tally,
    pub latency: &'a mut Histogram<u64>,
}

pub struct Client {
    pub stream: ClientStream,
    /// Index into `Plan::clients`.
    pub slot: usize,
    pub stage: Stage,
    /// A churn reconnection: not counted in the initial connect figures.
    pub reconnect: bool,
    /// When churn closes this connection (0: not scheduled yet).
    pub dies_at_ns: u64,
    pub started_ns: u64,
    /// The start of a frame (or of the handshake response) that the last read cut short.
    pending: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    pub sender: Option<Sender>,
    /// Why the connection failed, when it did: shown to the user.
    pub failure: Option<String>,
    /// Between the server's `*** recent messages in ROOM:` and `*** end of recent messages`:
    /// the room's history, messages of an earlier run whose tokens must not count.
    in_replay: bool,
    /// The server agreed to `permessage-deflate`: its messages may come compressed.
    deflate: bool,
}

/// The notices around a room's history (see docs/PROTOCOL.md, "History and resume").
const REPLAY_START: &[u8] = b"*** recent messages in ";
const REPLAY_END: &[u8] = b"*** end of recent messages";

impl Client {
    /// Starts connecting client `slot` of the plan, registered under `index`.
    pub fn open(plan: &Plan, poll: &Poll, slot: usize, index: usize, now_ns: u64) -> io::Result<Client> {
        let tcp = match plan.clients[slot].source {
            None => TcpStream::connect(plan.addr)?,
            Some(source) => connect_from(source, plan.addr)?,
        };
        // Nagle would hold a sender's small frames behind unacknowledged ones.
        let _ = tcp.set_nodelay(true);
        let mut stream = ClientStream::new(tcp, plan.tls.as_ref())?;
        poll.registry().register(&mut stream, MioToken(index), Interest::READABLE | Interest::WRITABLE)?;
        let sender = plan.clients[slot].sender.map(|id| Sender { id, next_seq: 0, acked: 0, next_due_ns: 0 });
        Ok(Client {
            stream,
            slot,
            stage: Stage::Connecting,
            reconnect: false,
            dies_at_ns: 0,
            started_ns: now_ns,
            pending: Vec::new(),
            wbuf: handshake::request(&plan.host, &plan.path, plan.offers),
            wpos: 0,
            sender,
            failure: None,
            in_replay: false,
            deflate: false,
        })
    }

    pub fn is_connecting(&self) -> bool {
        matches!(self.stage, Stage::Connecting | Stage::Handshaking)
    }

    pub fn is_open(&self) -> bool {
        matches!(self.stage, Stage::Open)
    }

    /// Bytes queued and not yet written.
    pub fn unwritten(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Records why the connection failed; always false, for `return self.failed(..)`.
    fn failed(&mut self, why: String) -> bool {
        self.failure.get_or_insert(why);
        false
    }

    /// Queues a close 1000 (churn) and starts waiting for the server's answer.
    pub fn start_close(&mut self, deadline_ns: u64, rng: &mut Rng) {
        push_client_frame(&mut self.wbuf, 0x88, &1000u16.to_be_bytes(), Some(rng.mask()));
        self.stage = Stage::Closing { deadline_ns };
    }

    /// Writes queued bytes until done or blocked; false if the connection failed.
    pub fn flush(&mut self) -> bool {
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return self.failed("connection closed".into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return true,
                Err(e) => return self.failed(describe(&e)),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        // Over TLS, what the session still holds (a plain socket holds nothing).
        match self.stream.flush() {
            Ok(()) => true,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected) => true,
            Err(e) => self.failed(describe(&e)),
        }
    }

    /// Reads what the server sent, handling the handshake response and every complete frame;
    /// false if the connection ended or failed. `read_closed`: the readiness said the server
    /// has finished sending.
    ///
    /// Each read lands in the worker's buffer behind the carried-over tail of the last one, so
    /// the frames are walked where they landed. A plain socket read that comes back short of
    /// the buffer has drained the socket (a later arrival raises a new edge), so a busy
    /// connection costs one `read` per readiness rather than a second one that would block;
    /// not when the readiness also reported the end of the stream, whose edge is spent: reading
    /// on finds it. A frame bigger than half the buffer is gathered in `pending` itself, so its
    /// bytes are copied once, not once per read.
    pub fn read(
        &mut self,
        plan: &Plan,
        recorder: &mut Recorder,
        tools: &mut Tools,
        sending: bool,
        read_closed: bool,
    ) -> bool {
        loop {
            let carried = self.pending.len();
            let frame_len = match self.is_open() {
                true => match wire::frame_len_hint(&self.pending) {
                    // A complete header (at most 14 bytes) whose length overflows.
                    None if carried >= 14 => {
                        return self.failed("the server announced an absurd frame".into())
                    }
                    hint => hint.unwrap_or(0),
                },
                false if carried > MAX_HANDSHAKE_RESPONSE => {
                    return self.failed("the server's handshake response never ended".into())
                }
                false => 0,
            };
            if frame_len > MAX_FRAME {
                // A server announcing an absurd frame: dropped rather than allocated.
                return self.failed(format!("the server announced a {frame_len}-byte frame"));
            }
            if frame_len > READ_BUFFER / 2 {
                match self.gather_big_frame(frame_len, recorder, tools) {
                    Some(true) => continue,
                    Some(false) => return true,
                    None => return false,
                }
            }
            if tools.rx.len() < carried + READ_BUFFER / 2 {
                tools.rx.resize(carried + READ_BUFFER / 2, 0);
            }
            let room = tools.rx.len() - carried;
            let read = match read_some(&mut self.stream, &mut tools.rx[carried..]) {
                Ok(Some(n)) => {
                    recorder.tally.wire_bytes += n as u64;
                    n
                }
                Ok(None) => return true,
                Err(why) => return self.failed(why),
            };
            tools.rx[..carried].copy_from_slice(&self.pending);
            self.pending.clear();
            let len = carried + read;
            let mut at = 0;
            if self.is_connecting() {
                match self.handshake_response(&tools.rx[..len], plan, &mut tools.rng) {
                    Some(Some(end)) => {
                        at = end;
                        recorder.tally.handshakes += 1;
                        recorder.tally.handshakes_deflate += u64::from(self.deflate);
                    }
                    Some(None) => {
                        self.pending.extend_from_slice(&tools.rx[..len]);
                        continue;
                    }
                    None => return false,
                }
            }
            let now_ns = recorder.shared.now_ns();
            let Some(consumed) =
                self.frames(&tools.rx[..len], at, recorder, &mut tools.rng, &mut tools.inflating, now_ns)
            else {
                return false;
            };
            self.pending.extend_from_slice(&tools.rx[consumed..len]);
            if sending && self.is_open() {
                self.top_up(plan, recorder.shared, tools, now_ns);
            }
            if read < room && !read_closed && matches!(self.stream, ClientStream::Plain(_)) {
                return true;
            }
        }
    }

    /// Reads more of a frame of `frame_len` bytes straight into `pending`, and handles it once
    /// complete (giving its memory back). Some(true): go on reading; Some(false): the socket
    /// is drained; None: the connection ended or failed.
    fn gather_big_frame(
        &mut self,
        frame_len: usize,
        recorder: &mut Recorder,
        tools: &mut Tools,
    ) -> Option<bool> {
        let have = self.pending.len();
        if have < frame_len {
            self.pending.resize(frame_len, 0);
            let read = read_some(&mut self.stream, &mut self.pending[have..]);
            let got = match &read {
                Ok(Some(n)) => *n,
                _ => 0,
            };
            recorder.tally.wire_bytes += got as u64;
            self.pending.truncate(have + got);
            match read {
                Ok(Some(_)) => {}
                Ok(None) => return Some(false),
                Err(why) => {
                    self.failed(why);
                    return None;
                }
            }
            if self.pending.len() < frame_len {
                return Some(true);
            }
        }
        let frame = std::mem::take(&mut self.pending);
        let now_ns = recorder.shared.now_ns();
        self.frames(&frame, 0, recorder, &mut tools.rng, &mut tools.inflating, now_ns)?;
        Some(true)
    }

    /// The 101 response at the front of `buf`: where it ends, None inside if it is not complete
    /// yet, or None if the server refused or answered what the bench did not offer.
    fn handshake_response(&mut self, buf: &[u8], plan: &Plan, rng: &mut Rng) -> Option<Option<usize>> {
        let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
            return Some(None);
        };
        match handshake::check_response(&buf[..end], plan.offers) {
            Ok(agreed) => self.deflate = agreed.deflate,
            Err(why) => {
                self.failed(why);
                return None;
            }
        }
        self.stage = Stage::Open;
        if let Some(text) = &plan.clients[self.slot].first_message {
            // Queued ahead of any traffic; the server handles a connection's messages in
            // order, so everything this client sends later goes to the joined room.
            push_client_frame(&mut self.wbuf, 0x81, text, Some(rng.mask()));
        }
        Some(Some(end + 4))
    }

    /// Handles every complete frame from `at` (inflating those that came compressed); returns
    /// how far the buffer was consumed, or None if the server closed or sent what cannot be read.
    fn frames(
        &mut self,
        buf: &[u8],
        mut at: usize,
        recorder: &mut Recorder,
        rng: &mut Rng,
        inflating: &mut Inflating,
        now_ns: u64,
    ) -> Option<usize> {
        while let Some(frame) = wire::parse_frame(&buf[at..]) {
            let payload = &buf[at + frame.payload.0..at + frame.payload.1];
            let message = match inflating.message(frame.first_byte, payload, self.deflate) {
                Ok(message) => message,
                Err(why) => {
                    self.failed(why);
                    return None;
                }
            };
            match frame.opcode {
                1 | 0 => {
                    let text = message;
                    recorder.tally.message_bytes += text.len() as u64;
                    if text.first() == Some(&b'*') {
                        // A notice: only the replay markers matter here.
                        if text.starts_with(REPLAY_START) {
                            self.in_replay = true;
                        } else if text == REPLAY_END {
                            self.in_replay = false;
                        }
                    } else if let Some(token) = Token::find(text).filter(|_| !self.in_replay) {
                        // In JSON mode the history's messages say so themselves.
                        if !(text.first() == Some(&b'{') && payload::is_json_replay(text)) {
                            self.delivered(token, recorder, now_ns);
                        }
                    }
                }
                2 => recorder.tally.message_bytes += message.len() as u64,
                9 => push_client_frame(&mut self.wbuf, 0x8A, message, Some(rng.mask())),
                8 => return None,
                _ => {}
            }
            at += frame.len;
        }
        Some(at)
    }

    fn delivered(&mut self, token: Token, recorder: &mut Recorder, now_ns: u64) {
        recorder.tally.delivered += 1;
        if let Some(samples) = &recorder.shared.samples {
            samples.delivered(token, now_ns);
        }
        if recorder.shared.counted(token.sent_ns) {
            recorder.tally.delivered_counted += 1;
            let _ = recorder.latency.record(now_ns.saturating_sub(token.sent_ns).max(1));
        }
        // Only a message this sender sent acknowledges anything (the window must never run
        // ahead of what was sent).
        if let Some(sender) = self.sender.as_mut().filter(|s| s.id == token.sender && token.seq < s.next_seq)
        {
            sender.acked = sender.acked.max(token.seq + 1);
        }
    }

    /// Sends whatever the pace allows now; returns true if anything was queued. `scratch` is
    /// reused for each message, so sending allocates nothing.
    pub fn top_up(&mut self, plan: &Plan, shared: &Shared, tools: &mut Tools, now_ns: u64) -> bool {
        let Some(sender) = self.sender.as_mut() else { return false };
        let mut queued = false;
        loop {
            let due = match plan.pace {
                Pace::Window(window) => sender.next_seq - sender.acked < window,
                Pace::Interval(step) => {
                    if sender.next_due_ns == 0 {
                        // Stagger senders evenly over one interval, so the aggregate rate is
                        // smooth rather than a burst of every sender at once.
                        sender.next_due_ns =
                            now_ns + step * u64::from(sender.id) / u64::from(plan.total_senders.max(1));
                    }
                    sender.next_due_ns <= now_ns
                }
                Pace::Idle => false,
                Pace::Shootout => {
                    let Some(samples) = shared.samples.as_ref() else { return queued };
                    if let Some((first, _)) = samples.window().filter(|&(first, _)| sender.next_seq < first) {
                        // A new step: its samples take the step's sequence numbers.
                        (sender.next_seq, sender.acked) = (first, first);
                    }
                    samples.may_send(sender.id, sender.next_seq)
                }
            };
            if !due {
                return queued;
            }
            let token = Token { sender: sender.id, seq: sender.next_seq, sent_ns: now_ns };
            tools.scratch.clear();
            token.write(&mut tools.scratch);
            match plan.text {
                Some(size) => {
                    let len = size.pick(&mut tools.rng).max(wire::TOKEN_LEN);
                    text::fill(&mut tools.scratch, len, &mut tools.rng);
                }
                None => tools.scratch.resize(plan.size.max(wire::TOKEN_LEN), b'x'),
            }
            push_client_frame(&mut self.wbuf, 0x81, &tools.scratch, Some(tools.rng.mask()));
            sender.next_seq += 1;
            if let Pace::Interval(step) = plan.pace {
                sender.next_due_ns += step;
            }
            shared.sent.fetch_add(1, Ordering::Relaxed);
            if shared.counted(now_ns) {
                shared.sent_counted.fetch_add(1, Ordering::Relaxed);
            }
            queued = true;
        }
    }
}
