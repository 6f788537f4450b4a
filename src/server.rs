//! The event loop: one thread, one `mio::Poll`, every connection in one `Slab`.
//!
//! Each poll iteration (1) accepts new connections, (2) reads from every readable connection
//! until `WouldBlock` (edge-triggered readiness) and dispatches what arrived, (3) fires due
//! timers, then (4) flushes every connection whose outbox was touched, once, with vectored
//! writes: broadcasts made during the iteration leave together. WRITABLE interest is registered
//! only while a socket refused some of its queue.
//!
//! A connection's token is its slab key. Timers (handshake, idle/ping, close deadlines) live in
//! a min-heap consulted for the poll timeout; entries are checked against the connection's
//! serial and current deadline when they fire, so stale ones cost nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::{debug, info, trace, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::Role;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::chat::{Audience, Body, Chat, Effect};
use crate::config::Config;
use crate::connection::{Connection, Failure, HandshakeStream, Phase, Route, Transport};
use crate::frame::{self, Opcode};
use crate::http::{self, Decision, Endpoint, HeadProgress, Reply};
use crate::origin::OriginPolicy;
use crate::outbox::Flushed;
use crate::rate::RateLimiter;

const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);

/// Messages read from one connection before others get a turn; the rest waits for the next
/// iteration, so one flooding client cannot starve the loop.
const MESSAGES_PER_TURN: usize = 64;

/// After `accept` fails for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM), wait this
/// long before trying again rather than spinning on a listener that stays readable.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Slab capacity from which an emptied server gives its memory back (see `release_memory`);
/// below it, keeping the capacity for the next clients costs next to nothing.
const RELEASE_AFTER_CROWD: usize = 1024;

/// The chat server.
pub struct Server {
    config: Config,
    ws_config: WebSocketConfig,
    origins: OriginPolicy,
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    signals: Signals,
    conns: Slab<Connection>,
    /// Connections counted against `--max-connections`.
    clients: usize,
    chat: Chat,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_serial: u64,
    /// Connections with queued output to flush at the end of this iteration.
    dirty: Vec<usize>,
    /// Connections that still had input when their turn ended.
    unfinished_reads: Vec<usize>,
    /// Readers found over `--max-outbound` during a broadcast, cut off after it.
    too_slow: Vec<usize>,
    /// Scratch list of chat effects, reused.
    effects: Vec<Effect>,
    /// Accepting is paused: at the connection cap, or after an accept error, until this time.
    accept_paused: bool,
    accept_retry_at: Option<Instant>,
    last_accept_warning: Option<Instant>,
    shutdown_deadline: Option<Instant>,
    /// Origin of the millisecond clock the rate limiter uses.
    started: Instant,
}

impl Server {
    /// Binds the listening socket and prepares the loop; nothing is accepted until [`run`](Self::run).
    pub fn bind(config: Config) -> io::Result<Self> {
        config.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let poll = Poll::new()?;
        let mut listener = listen(config.addr, config.backlog)?;
        let local_addr = listener.local_addr()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        let ws_config = config.websocket_config();
        let chat = Chat::with_announce_limit(config.announce_limit);
        let origins = config.origin_policy().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Self {
            config,
            ws_config,
            origins,
            poll,
            listener: Some(listener),
            local_addr,
            signals,
            conns: Slab::new(),
            clients: 0,
            chat,
            timers: BinaryHeap::new(),
            next_serial: 0,
            dirty: Vec::new(),
            unfinished_reads: Vec::new(),
            too_slow: Vec::new(),
            effects: Vec::new(),
            accept_paused: false,
            accept_retry_at: None,
            last_accept_warning: None,
            shutdown_deadline: None,
            started: Instant::now(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs until SIGINT/SIGTERM, then closes every client with 1001 and returns once they are
    /// gone or `--shutdown-timeout` has passed.
    pub fn run(mut self) -> io::Result<()> {
        info!("wschat listening on {}", self.local_addr);
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let carried = std::mem::take(&mut self.unfinished_reads);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    SIGNALS => {
                        if self.on_signal() {
                            info!("second signal: exiting now");
                            return Ok(());
                        }
                    }
                    Token(key) => {
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(key);
                        }
                    }
                }
            }
            for key in carried {
                self.on_readable(key);
            }
            let now = Instant::now();
            self.fire_timers(now);
            self.flush_dirty();
            if self.conns.is_empty() && self.conns.capacity() >= RELEASE_AFTER_CROWD {
                self.release_memory();
            }
            if self.accept_paused && self.accept_retry_at.is_none_or(|at| now >= at) {
                self.accept_paused = false;
                self.accept_retry_at = None;
                self.accept_all();
                self.flush_dirty();
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() {
                    info!("all clients closed; bye");
                    return Ok(());
                }
                if now >= deadline {
                    warn!("shutdown timeout: dropping {} connection(s) still open", self.conns.len());
                    return Ok(());
                }
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.unfinished_reads.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = self.timers.peek().map(|Reverse((at, _, _))| *at);
        for candidate in [self.accept_retry_at.filter(|_| self.accept_paused), self.shutdown_deadline] {
            next = match (next, candidate) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        // Round up so a deadline is never woken for a millisecond early and spun on.
        next.map(|at| at.saturating_duration_since(now) + Duration::from_millis(1))
    }

    // ----- accepting -----

    /// Most connections held at once: the clients plus room to answer a burst of over-limit
    /// clients with 503 rather than leaving them hanging.
    fn connection_cap(&self) -> usize {
        self.config.max_connections + 64 + self.config.max_connections / 16
    }

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            if self.accept_paused {
                return;
            }
            if self.conns.len() >= self.connection_cap() {
                debug!("connection cap reached; accepting paused until a connection closes");
                self.accept_paused = true;
                return;
            }
            match listener.accept() {
                Ok((socket, peer)) => self.admit(socket, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(e) => {
                    // While starved of descriptors this repeats every backoff: warn at most
                    // once per ACCEPT_WARNING_INTERVAL so the log stays readable.
                    let now = Instant::now();
                    if self.last_accept_warning.is_none_or(|at| now >= at + ACCEPT_WARNING_INTERVAL) {
                        self.last_accept_warning = Some(now);
                        warn!("accept failed: {e}; retrying every {ACCEPT_BACKOFF:?} (further failures logged at debug)");
                    } else {
                        debug!("accept failed again: {e}");
                    }
                    self.accept_paused = true;
                    self.accept_retry_at = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut socket: TcpStream, peer: SocketAddr) {
        // Chat lines are small and latency matters more than packet count; the outbox already
        // coalesces everything queued in one iteration into one write.
        if let Err(e) = socket.set_nodelay(true) {
            debug!("{peer}: set_nodelay failed: {e}");
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(&mut socket, Token(key), Interest::READABLE) {
            warn!("{peer}: cannot register socket: {e}");
            return;
        }
        let counted = self.clients < self.config.max_connections;
        if counted {
            self.clients += 1;
        }
        let now = Instant::now();
        let deadline = now + self.config.handshake_timeout;
        self.next_serial += 1;
        entry.insert(Connection::new(self.next_serial, peer, socket, now, deadline, counted));
        debug!("{peer}: accepted as #{key}");
        self.schedule(key, deadline);
    }

    // ----- reading -----

    fn on_readable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.phase {
            Phase::Head { .. } => self.read_head(key),
            Phase::Open { .. } => self.read_messages(key),
            Phase::Finishing { .. } => self.discard_input(key),
            Phase::Gone => {}
        }
    }

    fn read_head(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Phase::Head { transport, head, .. } = &mut conn.phase else {
            return;
        };
        let mut chunk = [0u8; 2048];
        loop {
            match transport.socket.read(&mut chunk) {
                Ok(0) => return self.remove(key, "closed before the handshake"),
                Ok(n) => {
                    head.extend_from_slice(&chunk[..n]);
                    match http::head_progress(head) {
                        HeadProgress::Incomplete => {}
                        HeadProgress::Complete => break,
                        HeadProgress::Refused(reply) => return self.reject(key, reply),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.remove(key, &format!("read failed during handshake: {e}")),
            }
        }
        let decision = http::decide(head, &self.origins);
        match decision {
            Decision::Serve(reply) => self.respond(key, reply),
            Decision::Reject(reply) => self.reject(key, reply),
            Decision::Upgrade(_) if !conn.counted => self.reject(key, Reply::service_unavailable()),
            Decision::Upgrade(endpoint) => self.upgrade(key, endpoint),
        }
    }

    /// Hands the request to tungstenite, which validates it once more and writes the 101
    /// response; the response is queued and the WebSocket set up over the socket.
    fn upgrade(&mut self, key: usize, endpoint: Endpoint) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let Phase::Head { mut transport, head, .. } = std::mem::replace(&mut conn.phase, Phase::Gone) else {
            return;
        };
        let mut stream = HandshakeStream { head: &head, response: Vec::new() };
        if let Err(e) = tungstenite::accept_with_config(&mut stream, Some(self.ws_config)) {
            // http::decide already checked what tungstenite checks, so this is not expected.
            warn!("{}: handshake refused by tungstenite: {e}", conn.peer);
            conn.phase = Phase::Head { transport, head: Vec::new(), deadline: Instant::now() };
            return self.reject(key, Reply::new(400, "Bad Request", "invalid WebSocket handshake"));
        }
        transport.outbox.push(Bytes::from(stream.response));
        let ws = WebSocket::from_raw_socket(transport, Role::Server, Some(self.ws_config));
        let peer = conn.peer;
        let route = match endpoint {
            Endpoint::Chat { .. } => Route::Chat,
            Endpoint::Echo => Route::Echo,
        };
        conn.phase = Phase::Open { ws, route, closing: None };
        conn.last_heard = Instant::now();
        conn.rate = RateLimiter::new(self.config.max_messages_per_sec, millis_since(self.started));
        let first_ping = conn.last_heard + self.config.idle_timeout / 2;
        self.mark_dirty(key);
        self.schedule(key, first_ping);
        match endpoint {
            Endpoint::Chat { nick } => {
                self.chat.connect(key, nick.as_deref(), &mut self.effects);
                debug!("{peer}: joined the chat as {}", self.chat.nick(key).unwrap_or("?"));
                self.apply_effects();
            }
            Endpoint::Echo => debug!("{peer}: echo session open"),
        }
    }

    fn read_messages(&mut self, key: usize) {
        for _ in 0..MESSAGES_PER_TURN {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let Phase::Open { ws, route, closing } = &mut conn.phase else {
                return;
            };
            let (is_echo, is_closing) = (*route == Route::Echo, closing.is_some());
            let received_before = ws.get_ref().received;
            let result = ws.read();
            if ws.get_ref().received != received_before {
                conn.last_heard = Instant::now();
                conn.ping_sent = false;
            }
            let limit = self.config.max_messages_per_sec;
            let counts = matches!(
                result,
                Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_) | Message::Pong(_))
            );
            let over_limit =
                limit > 0 && counts && !is_closing && !conn.rate.allow(limit, millis_since(self.started));
            let peer = conn.peer;
            if !ws.get_ref().outbox.is_empty() {
                // tungstenite answered something itself (a pong or a close reply).
                self.mark_dirty(key);
            }
            if over_limit {
                warn!("{peer}: over {limit} messages per second (--max-messages-per-sec); closing with 1008");
                let reason = format!("rate limit exceeded: more than {limit} messages per second");
                return self.close(key, CloseCode::Policy, &reason);
            }
            match result {
                Ok(Message::Text(_) | Message::Binary(_)) if is_closing => {
                    // Data after we started closing is ignored, as RFC 6455 7.1.1 allows.
                }
                Ok(Message::Text(text)) if is_echo => self.echo(key, Opcode::Text, text.as_bytes()),
                Ok(Message::Binary(data)) if is_echo => self.echo(key, Opcode::Binary, &data),
                Ok(Message::Text(text)) => {
                    self.chat.text(key, text.as_str(), &mut self.effects);
                    self.apply_effects();
                }
                Ok(Message::Binary(data)) => {
                    self.chat.binary(key, data, &mut self.effects);
                    self.apply_effects();
                }
                Ok(Message::Close(frame)) => {
                    // Either the client's reply to our close, or its own close, which
                    // tungstenite has queued an answer to: push that answer out, then end.
                    if let Some(Connection { peer, phase: Phase::Open { ws, .. }, .. }) =
                        self.conns.get_mut(key)
                    {
                        let _ = ws.flush();
                        debug!("{peer}: closed by client ({})", describe_close(frame.as_ref()));
                    }
                    return self.finish(key, "closed", false);
                }
                // Pings are answered by tungstenite; pongs only prove liveness.
                Ok(_) => {}
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(key, e),
            }
        }
        self.unfinished_reads.push(key);
    }

    /// Reads and drops whatever a finishing client still sends, until it closes its side.
    fn discard_input(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Phase::Finishing { transport, write_shut, peer_closed, .. } = &mut conn.phase else {
            return;
        };
        let mut sink = [0u8; 4096];
        loop {
            match transport.socket.read(&mut sink) {
                Ok(0) => {
                    *peer_closed = true;
                    if *write_shut {
                        return self.remove(key, "closed");
                    }
                    return;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.remove(key, "closed"),
            }
        }
    }

    // ----- writing -----

    fn echo(&mut self, key: usize, opcode: Opcode, payload: &[u8]) {
        let encoded = frame::encode(opcode, payload);
        self.deliver(key, encoded);
        self.cut_off_slow_readers();
    }

    /// Carries out the chat's effects: each message is framed once and the same buffer queued
    /// for every recipient.
    fn apply_effects(&mut self) {
        while !self.effects.is_empty() {
            let mut effects = std::mem::take(&mut self.effects);
            for effect in effects.drain(..) {
                match effect {
                    Effect::Send { to, body } => {
                        let encoded = match &body {
                            Body::Text(text) => frame::encode(Opcode::Text, text.as_bytes()),
                            Body::Binary(data) => frame::encode(Opcode::Binary, data),
                        };
                        match to {
                            Audience::Client(client) => self.deliver(client, encoded),
                            Audience::Room(room) => {
                                let Self { chat, conns, dirty, too_slow, config, .. } = self;
                                for &client in chat.room_members(&room) {
                                    queue_frame(
                                        conns,
                                        dirty,
                                        too_slow,
                                        config.max_outbound,
                                        client,
                                        &encoded,
                                    );
                                }
                            }
                        }
                    }
                    Effect::Close { client, reason } => self.close(client, CloseCode::Normal, &reason),
                }
            }
            // Keep the allocation for next time unless a cut-off produced new effects.
            if self.effects.is_empty() {
                self.effects = effects;
            }
            self.cut_off_slow_readers();
        }
    }

    fn deliver(&mut self, client: usize, encoded: Bytes) {
        queue_frame(
            &mut self.conns,
            &mut self.dirty,
            &mut self.too_slow,
            self.config.max_outbound,
            client,
            &encoded,
        );
    }

    /// Disconnects readers whose outbox went over `--max-outbound`: what they have not started
    /// receiving is dropped, a close 1008 is queued after it, and the normal close deadline
    /// bounds how long they can hold on.
    fn cut_off_slow_readers(&mut self) {
        while let Some(key) = self.too_slow.pop() {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if !conn.accepts_messages() {
                continue;
            }
            warn!(
                "{}: too slow: over {} bytes queued (--max-outbound); disconnecting",
                conn.peer, self.config.max_outbound
            );
            if let Some(transport) = conn.transport_mut() {
                transport.outbox.truncate_unstarted();
            }
            self.close(key, CloseCode::Policy, "too slow: outbound queue limit exceeded");
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    fn flush_dirty(&mut self) {
        while let Some(key) = self.dirty.pop() {
            self.flush(key);
        }
    }

    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.dirty = false;
        let Some(Transport { socket, outbox, .. }) = conn.transport_mut() else {
            return;
        };
        let flushed = match outbox.flush_to(socket) {
            Ok(flushed) => flushed,
            Err(e) => return self.remove(key, &format!("write failed: {e}")),
        };
        let wants_writable = flushed == Flushed::Partly;
        if wants_writable != conn.writable_interest {
            let interest =
                if wants_writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let Some(transport) = conn.transport_mut() else {
                return;
            };
            if let Err(e) = self.poll.registry().reregister(&mut transport.socket, Token(key), interest) {
                return self.remove(key, &format!("reregister failed: {e}"));
            }
            conn.writable_interest = wants_writable;
        }
        if flushed == Flushed::All {
            if let Phase::Finishing { transport, linger, write_shut, peer_closed, .. } = &mut conn.phase {
                if !*linger {
                    return self.remove(key, "closed");
                }
                if !*write_shut {
                    *write_shut = true;
                    // Half-close: the client sees our last bytes then EOF, and we keep reading
                    // so its late data does not turn our close into a reset.
                    let _ = transport.socket.shutdown(Shutdown::Write);
                }
                if *peer_closed {
                    self.remove(key, "closed");
                }
            }
        }
    }

    // ----- closing -----

    /// Logs and sends an HTTP error reply.
    fn reject(&mut self, key: usize, reply: Reply) {
        if let Some(conn) = self.conns.get(key) {
            let why = String::from_utf8_lossy(&reply.body);
            // Refusals an operator should see: a full server, and browsers from other sites
            // (a misconfigured --allowed-origins looks exactly like this).
            if reply.status >= 500 || reply.status == 403 {
                warn!("{}: answering {} {}: {}", conn.peer, reply.status, reply.reason, why.trim_end());
            } else {
                debug!("{}: answering {} {}: {}", conn.peer, reply.status, reply.reason, why.trim_end());
            }
        }
        self.respond(key, reply);
    }

    /// Queues an HTTP response, then finishes the connection (one request per connection).
    fn respond(&mut self, key: usize, reply: Reply) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if reply.status < 400 {
            debug!("{}: {} {}", conn.peer, reply.status, reply.reason);
        }
        let (head, body) = reply.into_parts();
        if let Some(transport) = conn.transport_mut() {
            transport.outbox.push(head);
            if let Some(body) = body {
                transport.outbox.push(body);
            }
        }
        self.finish(key, "answered", true);
    }

    /// Starts a server-initiated closing handshake: close frame queued, chat left, and the
    /// client given `--close-timeout` to answer.
    fn close(&mut self, key: usize, code: CloseCode, reason: &str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Phase::Open { ws, closing, .. } = &mut conn.phase else {
            return;
        };
        if closing.is_some() {
            return;
        }
        let deadline = Instant::now() + self.config.close_timeout;
        *closing = Some(deadline);
        let frame = CloseFrame { code, reason: truncate_reason(reason).into() };
        if ws.close(Some(frame)).and_then(|()| ws.flush()).is_err() {
            trace!("#{key}: close frame not queued (already closing)");
        }
        self.leave_chat(key, reason);
        self.mark_dirty(key);
        self.schedule(key, deadline);
    }

    /// Fails the connection after a protocol error, with the close code RFC 6455 asks for.
    fn fail(&mut self, key: usize, error: WsError) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let (code, reason) = match Failure::of(error) {
            Failure::Close(code, reason) => (code, reason),
            Failure::Closed => return self.finish(key, "closed", false),
            Failure::Dropped(why) => return self.remove(key, &why),
        };
        warn!("{}: {reason}; closing with {}", conn.peer, u16::from(code));
        if let Phase::Open { ws, .. } = &mut conn.phase {
            let _ = ws.close(Some(CloseFrame { code, reason: truncate_reason(&reason).into() }));
            let _ = ws.flush();
        }
        // The client broke the protocol: nothing more it sends is processed (RFC 6455 7.1.7).
        self.finish(key, &reason, true);
    }

    /// Leaves the chat and moves to [`Phase::Finishing`]: flush, then close (after waiting
    /// for the client's EOF if `linger`).
    fn finish(&mut self, key: usize, why: &str, linger: bool) {
        self.leave_chat(key, why);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let deadline = Instant::now() + self.config.close_timeout;
        conn.finish(deadline, linger);
        self.mark_dirty(key);
        self.schedule(key, deadline);
    }

    fn leave_chat(&mut self, key: usize, why: &str) {
        if self.chat.nick(key).is_some() {
            self.chat.disconnect(key, why, &mut self.effects);
            self.apply_effects();
        }
    }

    /// Drops a connection now: socket closed, slot freed, chat told.
    fn remove(&mut self, key: usize, why: &str) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        debug!("{}: #{key} removed: {why}", conn.peer);
        if let Some(transport) = conn.transport_mut() {
            let _ = self.poll.registry().deregister(&mut transport.socket);
        }
        if conn.counted {
            self.clients -= 1;
        }
        // The room hears a plain reason; the details (OS errors) are for the log only.
        self.leave_chat(key, if why == "closed" { why } else { "connection lost" });
        if self.accept_paused {
            // A descriptor and a slot are free again: resume at the end of this iteration.
            self.accept_retry_at = Some(Instant::now());
        }
    }

    /// Gives back what a crowd of connections left behind once the last of them is gone: the
    /// slab, the scratch lists and stale timers keep their peak capacity otherwise, and the
    /// allocator keeps freed pages, so an idle server would stay at its busiest size.
    fn release_memory(&mut self) {
        info!("no connections left after a crowd of {}; releasing memory", self.conns.capacity());
        self.conns = Slab::new();
        self.timers = BinaryHeap::new(); // every timer left belongs to a connection that is gone
        self.dirty = Vec::new();
        self.unfinished_reads = Vec::new();
        self.too_slow = Vec::new();
        self.effects = Vec::new();
        self.chat.release_memory();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only returns free heap pages to the OS; it has no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    // ----- timers -----

    fn schedule(&mut self, key: usize, at: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.timer_at.is_none_or(|current| at < current) {
            conn.timer_at = Some(at);
            self.timers.push(Reverse((at, key, conn.serial)));
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, key, serial))) = self.timers.peek() {
            if at > now {
                return;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.serial != serial || conn.timer_at != Some(at) {
                continue;
            }
            conn.timer_at = None;
            self.on_deadline(key, now);
        }
    }

    fn on_deadline(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let idle = self.config.idle_timeout;
        let next = match &mut conn.phase {
            Phase::Head { deadline, .. } if now >= *deadline => {
                warn!(
                    "{}: handshake not completed within {:?}; dropping",
                    conn.peer, self.config.handshake_timeout
                );
                return self.remove(key, "handshake timeout");
            }
            Phase::Finishing { deadline, .. } | Phase::Open { closing: Some(deadline), .. }
                if now >= *deadline =>
            {
                debug!("{}: close not completed in time", conn.peer);
                return self.remove(key, "close timeout");
            }
            Phase::Head { deadline, .. }
            | Phase::Finishing { deadline, .. }
            | Phase::Open { closing: Some(deadline), .. } => *deadline,
            Phase::Open { ws, closing: None, .. } => {
                let silent = now.saturating_duration_since(conn.last_heard);
                if silent >= idle {
                    warn!("{}: silent for {:?} (no answer to ping); closing with 1001", conn.peer, silent);
                    return self.close(key, CloseCode::Away, "idle timeout");
                }
                if silent >= idle / 2 && !conn.ping_sent {
                    conn.ping_sent = true;
                    if ws.send(Message::Ping(Bytes::from_static(b"wschat"))).is_ok() {
                        trace!("{}: keep-alive ping", conn.peer);
                    }
                    self.mark_dirty(key);
                }
                let Some(conn) = self.conns.get(key) else {
                    return;
                };
                conn.last_heard + if conn.ping_sent { idle } else { idle / 2 }
            }
            Phase::Gone => return self.remove(key, "gone"),
        };
        self.schedule(key, next);
    }

    // ----- shutdown -----

    /// Returns true if this is a second signal and the process should stop at once.
    fn on_signal(&mut self) -> bool {
        let mut got = false;
        for signal in self.signals.pending() {
            got = true;
            info!("received signal {signal}");
        }
        if !got {
            return false;
        }
        if self.shutdown_deadline.is_some() {
            return true;
        }
        info!("shutting down: closing {} connection(s) with 1001", self.conns.len());
        self.shutdown_deadline = Some(Instant::now() + self.config.shutdown_timeout);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            match self.conns.get(key).map(|c| &c.phase) {
                Some(Phase::Head { .. }) => self.remove(key, "server shutting down"),
                Some(Phase::Open { .. }) => self.close(key, CloseCode::Away, "server shutting down"),
                _ => {}
            }
        }
        false
    }
}

/// Milliseconds since `start`, wrapping after 49 days (the rate limiter only compares nearby
/// readings, with wrapping arithmetic).
fn millis_since(start: Instant) -> u32 {
    start.elapsed().as_millis() as u32
}

/// Binds a non-blocking listener with our own backlog (mio's `bind` fixes it at 128).
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Lets a restarted server bind again while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Queues one encoded frame for one client, or marks it too slow. A free function over the
/// server's parts so a room can be iterated while its members' queues are filled.
fn queue_frame(
    conns: &mut Slab<Connection>,
    dirty: &mut Vec<usize>,
    too_slow: &mut Vec<usize>,
    max_outbound: usize,
    client: usize,
    encoded: &Bytes,
) {
    let Some(conn) = conns.get_mut(client) else {
        return;
    };
    let Phase::Open { ws, closing: None, .. } = &mut conn.phase else {
        return;
    };
    let outbox = &mut ws.get_mut().outbox;
    if outbox.queued() + encoded.len() > max_outbound {
        too_slow.push(client);
        return;
    }
    outbox.push(encoded.clone());
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(client);
    }
}

/// Errors that concern only the connection being accepted, not the listener.
fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}

/// Close reasons are limited to 123 bytes (RFC 6455 5.5); cut at a character boundary.
fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

fn describe_close(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) => format!("{} {:?}", u16::from(f.code), f.reason.as_str()),
        None => "no status".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_to_123_bytes_on_a_char_boundary() {
        assert_eq!(truncate_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= 123 && cut.len() == 122);
    }
}
