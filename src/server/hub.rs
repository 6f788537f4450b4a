//! The hub: every connection in one slab, the chat, and the routing between them, with no
//! knowledge of how bytes reach a socket.
//!
//! The hub is told what happened (a connection was accepted, is readable or writable, the time
//! is now T) and does the rest: it asks the [`Connection`] what reading amounted to, routes
//! messages to the [`Chat`] (or straight back, on `/echo`), turns the chat's [`Effect`]s into
//! frames queued by [`FanOut`], cuts off slow readers, fires timers, and flushes each touched
//! connection once per turn. It is generic over the stream, so the server runs it on mio
//! sockets and the [simulation](crate::sim) on scripted in-memory pipes: both run this code.
//!
//! What the hub cannot do itself, it hands back to its owner: sockets whose WRITABLE interest
//! must change ([`pop_interest_change`](Hub::pop_interest_change)) and sockets of removed
//! connections ([`pop_released`](Hub::pop_released)), to deregister.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use log::{debug, info};
use slab::Slab;
use tungstenite::protocol::frame::coding::CloseCode;

mod effects;
mod report;
mod shutdown;

use super::fanout::FanOut;
use super::timers::TimerQueue;
use crate::auth::{Auth, Identity};
use crate::broker::{Broker, LocalBroker, Notice, Request};
use crate::chat::{Chat, Effect, Join, Mode};
use crate::connection::Reading;
use crate::connection::{Admission, Clock, Connection, Flush, Route, Step, Stream};
use crate::deflate::{Deflation, Inflater, Outgoing};
use crate::frame::Opcode;
use crate::http::Endpoint;
use crate::metrics::{Counters, Kind};
use crate::settings::Settings;
use crate::store::{Store, StoreError, WriteBarrier};

/// Released sockets the hub keeps room for between turns.
const RELEASED_KEPT: usize = 64;

/// The close code of a connection a moderator removed (`/kick`, `/ban`): in the range RFC 6455
/// leaves to applications.
pub const KICKED: u16 = 4000;

/// What every chat member is told when the server shuts down, before its close 1001.
pub const SHUTDOWN_NOTICE: &str = "the server is shutting down; goodbye";

/// Connections, chat and the routing between them.
pub struct Hub<S> {
    settings: Settings,
    conns: Slab<Connection<S>>,
    chat: Chat,
    fanout: FanOut,
    timers: TimerQueue,
    /// Scratch list of chat effects, reused.
    effects: Vec<Effect>,
    /// Connections that still had input when their turn's budget ran out.
    unfinished_reads: Vec<usize>,
    /// Connections counted against `--max-connections`.
    clients: usize,
    /// Counted connections per client address (`--max-connections-per-ip`).
    per_address: HashMap<IpAddr, u32>,
    /// Origin of the millisecond clock that deadlines and the rate limiter count in.
    started: Instant,
    /// The wall clock at `started`, in milliseconds since the Unix epoch: message timestamps
    /// are `started_wall_ms` plus monotonic time, one clock reading per turn.
    started_wall_ms: u64,
    /// Connections whose WRITABLE interest must be (de)registered.
    interest_changes: Vec<usize>,
    /// Sockets of removed connections, to deregister.
    released: Vec<S>,
    /// What the metrics count.
    counters: Counters,
    /// What carries the chat between processes (in one process, [`LocalBroker`]).
    broker: Box<dyn Broker>,
    /// Scratch lists between the chat and the broker, reused.
    requests: Vec<Request>,
    notices: Vec<Notice>,
    /// Connections not read because they wait on the broker (see [`Chat::is_waiting`] and
    /// [`Broker::in_flight`]), or because it is saturated: read again once they no longer do.
    held: HashSet<usize>,
    /// Shutting down: the clients are being closed; newcomers and probes are answered 503.
    draining: bool,
    /// Answers to the HTTP API's calls, for the loop to take (one per call in flight, at most).
    api_answers: Vec<(crate::chat::api::Ticket, crate::chat::api::ApiAnswer)>,
    /// The one inflater every client's compressed messages go through (see `crate::deflate`).
    inflater: Inflater,
}

impl<S: Stream> Hub<S> {
    /// A hub whose chat is this process's alone.
    pub fn new(settings: Settings, now: Instant) -> Self {
        Self::with_broker(settings, Box::new(LocalBroker::new()), now)
    }

    /// A hub whose chat reaches other processes through `broker`.
    pub fn with_broker(settings: Settings, broker: Box<dyn Broker>, now: Instant) -> Self {
        Self {
            chat: Chat::with_limits(settings.chat),
            fanout: FanOut::new(settings.max_outbound, Deflation::new(settings.deflate_min_size)),
            settings,
            conns: Slab::new(),
            timers: TimerQueue::new(),
            effects: Vec::new(),
            unfinished_reads: Vec::new(),
            clients: 0,
            per_address: HashMap::new(),
            started: now,
            started_wall_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            interest_changes: Vec::new(),
            released: Vec::new(),
            counters: Counters::default(),
            broker,
            requests: Vec::new(),
            notices: Vec::new(),
            held: HashSet::new(),
            draining: false,
            api_answers: Vec::new(),
            inflater: Inflater::default(),
        }
    }

    /// Keeps history durably in `store` from now on, starting from what it holds. Before any
    /// client connects.
    pub fn attach_store(&mut self, store: Store) -> Result<(), StoreError> {
        let mut rooms = store.load(self.settings.chat.history)?;
        // Least recently active first, so that if more come back than --history-rooms keeps,
        // the ones forgotten are those that were quiet longest.
        rooms.sort_by_key(|room| room.messages.last().map_or(0, |m| m.ts));
        let messages: usize = rooms.iter().map(|r| r.messages.len()).sum();
        info!(
            "history: {} room(s), {messages} message(s) restored from {}",
            rooms.len(),
            store.path().display()
        );
        // Journaled from the start: rooms the restore has to forget (over --history-rooms) are
        // dropped from the store too.
        self.chat.keep_journal();
        for room in rooms {
            self.chat.restore_room(&room.key, &room.display, &room.epoch, room.next_seq, room.messages);
        }
        for (key, ban) in store.load_bans()? {
            self.chat.restore_ban(key, ban);
        }
        self.fanout.barrier = WriteBarrier::new(Some(store));
        self.chat.take_journal(self.fanout.barrier.pending_mut());
        Ok(())
    }

    /// Why the history store stopped accepting commits, if it did: the server must stop.
    pub fn store_failure(&self) -> Option<&StoreError> {
        self.fanout.barrier.failed.as_ref()
    }

    /// New JWT keys (SIGHUP): checked by every handshake from now on.
    pub fn set_auth(&mut self, auth: Arc<Auth>) {
        self.settings.auth = Some(auth);
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    /// Connections held (handshaking, open or finishing).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The connection under `key`, if any.
    pub fn connection(&self, key: usize) -> Option<&Connection<S>> {
        self.conns.get(key)
    }

    /// The key the next admitted connection will get (its poll token).
    pub fn vacant_key(&self) -> usize {
        self.conns.vacant_key()
    }

    /// A counted connection (see [`Self::admission`]) no longer counts against the limits.
    fn uncount(&mut self, address: IpAddr) {
        self.clients -= 1;
        if let Some(count) = self.per_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&address);
            }
        }
    }

    /// Takes in a new connection, which starts by reading its request head; returns its key.
    pub fn admit(&mut self, socket: S, peer: SocketAddr, now: Instant) -> usize {
        self.counters.accepted += 1;
        let admission = self.admission(peer.ip());
        if admission == Admission::Counted {
            self.clients += 1;
            *self.per_address.entry(peer.ip()).or_default() += 1;
        }
        let conn = Connection::new(peer, socket, self.clock(now), &self.settings, admission);
        let key = self.conns.insert(conn);
        debug!("{peer}: accepted as #{key}");
        self.rearm(key, now);
        key
    }

    fn admission(&self, address: IpAddr) -> Admission {
        let per_ip = self.settings.max_connections_per_ip;
        if self.draining {
            Admission::ShuttingDown
        } else if self.clients >= self.settings.max_connections {
            Admission::ServerFull
        } else if per_ip > 0 && self.per_address.get(&address).is_some_and(|&n| n as usize >= per_ip) {
            Admission::AddressFull
        } else {
            Admission::Counted
        }
    }

    /// When the hub next needs to run even if no socket is ready: now if reads were left
    /// over or the cluster has work to take, else the earliest timer.
    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        // The chat asked the cluster for something after this turn's exchange (a client whose
        // flush failed left, say), or a relink goes on: next turn must not wait for an event.
        if self.unfinished_reads.is_empty() && !self.has_broker_work() {
            self.timers.next_due().map(|ms| self.started + Duration::from_millis(ms))
        } else {
            Some(now)
        }
    }

    /// Some connection's reads were cut short by its budget: it is read again next turn.
    pub fn has_unfinished_reads(&self) -> bool {
        !self.unfinished_reads.is_empty()
    }

    /// The connections whose reads were cut short last turn; the caller reads them again
    /// after this turn's readiness events.
    pub fn take_unfinished_reads(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.unfinished_reads)
    }

    // ----- readiness -----

    /// The socket can take bytes again: flush it this turn.
    pub fn on_writable(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            self.fanout.mark_dirty(key, conn);
        }
    }

    /// The socket has input (or had some left): read one turn's worth and route it.
    /// `reading`: how far (see [`Reading`]).
    pub fn on_readable(&mut self, key: usize, reading: Reading, now: Instant) {
        let clock = self.clock(now);
        if let Some(conn) = self.conns.get_mut(key) {
            conn.begin_turn(reading);
        }
        loop {
            if self.waits_on_broker(key) && self.conns.contains(key) {
                // Its input waits, unread, until what it waits for has come (see `resume_held`).
                self.held.insert(key);
                break;
            }
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            match conn.read(&self.settings, self.chat.bans(), clock, &mut self.inflater) {
                Step::Upgraded(endpoint, identity) => {
                    self.on_upgraded(key, endpoint, identity.as_deref(), now)
                }
                Step::Text(text) => self.on_message(key, Incoming::Text(&text), now),
                Step::Binary(data) => self.on_message(key, Incoming::Binary(data), now),
                Step::Health(head_only) => self.answer_health(key, head_only, now),
                Step::Left(why) => {
                    self.leave_chat(key, &why, now);
                    break;
                }
                Step::Done | Step::Expired => break,
                Step::Yield => {
                    self.unfinished_reads.push(key);
                    break;
                }
                Step::Gone(why) => return self.remove(key, &why, now),
            }
        }
        if let Some(conn) = self.conns.get_mut(key) {
            self.counters.bytes_in += conn.bytes_read_this_turn();
            if let Some(verdict) = conn.take_verdict() {
                self.counters.count_verdict(verdict);
            }
        }
        // Everything queued counts, tungstenite's own pongs and close replies included.
        if self.conns.get(key).is_some_and(|c| c.queued() > self.settings.max_outbound) {
            self.fanout.judge_too_slow(key);
            self.cut_off_slow_readers(now);
        }
        self.after_activity(key, now);
    }

    fn on_upgraded(&mut self, key: usize, endpoint: Endpoint, identity: Option<&Identity>, now: Instant) {
        let peer = self.conns.get(key).map(Connection::peer);
        let Endpoint::Chat(query) = endpoint else { return debug!("{peer:?}: echo session open") };
        // A signed-in user's read markers, from the store, before its first replay (a user
        // seen lately has them here already, and newer).
        if let Some(user) = identity.map(|identity| crate::chat::names::fold(&identity.sub)) {
            if self.fanout.barrier.is_durable() && !self.chat.knows_markers(&user) {
                match self.fanout.barrier.markers(&user) {
                    Ok(markers) => self.chat.restore_markers(&user, markers),
                    Err(e) => log::error!("{e}"),
                }
            }
        }
        let join = Join {
            nick: query.nick.as_deref(),
            room: query.room.as_deref(),
            since: query.since.as_deref(),
            mode: Some(if query.json { Mode::Json } else { Mode::Text }),
            identity,
            ignored_token: query.ignored_token,
        };
        self.chat.connect(key, join, &mut self.effects);
        debug!("{peer:?}: asks to enter the chat (its nick is claimed first)");
        self.apply_effects(now);
    }

    /// A data message: to the chat, or straight back on `/echo`.
    fn on_message(&mut self, key: usize, message: Incoming, now: Instant) {
        let kind = match message {
            Incoming::Text(_) => Kind::Text,
            Incoming::Binary(_) => Kind::Binary,
        };
        self.counters.messages_received[kind as usize] += 1;
        match (self.conns.get(key).and_then(Connection::route), message) {
            (Some(Route::Echo), Incoming::Text(text)) => self.echo(key, Opcode::Text, text.as_bytes(), now),
            (Some(Route::Echo), Incoming::Binary(data)) => self.echo(key, Opcode::Binary, &data, now),
            (Some(Route::Chat), Incoming::Text(text)) => {
                self.chat.text(key, text, self.wall_ms(now), &mut self.effects);
                self.apply_effects(now);
            }
            (Some(Route::Chat), Incoming::Binary(data)) => {
                self.chat.binary(key, data, &mut self.effects);
                self.apply_effects(now);
            }
            (None, _) => {}
        }
    }

    fn echo(&mut self, key: usize, opcode: Opcode, payload: &[u8], now: Instant) {
        let kind = if opcode == Opcode::Text { Kind::Text } else { Kind::Binary };
        let delivered = self.fanout.queue(&mut self.conns, key, &mut Outgoing::new(opcode, payload));
        self.counters.deliveries[kind as usize] += u64::from(delivered);
        self.cut_off_slow_readers(now);
    }

    // ----- closing and removal -----

    /// Starts a server-initiated close of one connection; its client leaves the chat.
    pub fn close(&mut self, key: usize, code: CloseCode, reason: &str, now: Instant) {
        let clock = self.clock(now);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.close(code, reason, clock, &self.settings) {
            self.leave_chat(key, reason, now);
            self.after_activity(key, now);
        }
    }

    /// Drops a connection now: its socket is released, its slot freed, the chat told.
    pub fn remove(&mut self, key: usize, why: &str, now: Instant) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        self.held.remove(&key);
        // Whatever it still has in flight must not hold back the next connection in its slot.
        self.broker.forget(key);
        debug!("{}: #{key} removed: {why}", conn.peer());
        if let Some(verdict) = conn.take_verdict() {
            self.counters.count_verdict(verdict);
        }
        if conn.is_counted() {
            self.uncount(conn.peer().ip());
        }
        if let Some(socket) = conn.into_socket() {
            self.released.push(socket);
        }
        if self.timers.needs_compaction(self.conns.len()) {
            let conns = &self.conns;
            self.timers.retain(|key, at| conns.get(key).is_some_and(|c| c.has_timer(at)));
        }
        // The room hears a plain reason; the details (OS errors) are for the log only.
        self.leave_chat(key, if why == "closed" { why } else { "connection lost" }, now);
    }

    // ----- timers and flushing -----

    /// Runs every timer due at `now`.
    pub fn fire_timers(&mut self, now: Instant) {
        let clock = self.clock(now);
        // At most the entries there were: one a timer sets again for now waits for the next
        // turn instead of spinning this one.
        for _ in 0..self.timers.len() {
            let Some((key, at)) = self.timers.pop_due(clock.ms) else { break };
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if !conn.take_timer(at) {
                continue;
            }
            match conn.on_timer(clock, &self.settings) {
                Step::Gone(why) => {
                    self.remove(key, &why, now);
                    continue;
                }
                Step::Left(why) => self.leave_chat(key, &why, now),
                Step::Expired => self.expire_session(key, now),
                _ => {}
            }
            self.after_activity(key, now);
        }
    }

    /// Writes every connection touched this turn, once, and notes which sockets need their
    /// WRITABLE interest changed.
    pub fn flush(&mut self, now: Instant) {
        while let Some(key) = self.fanout.next_dirty() {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.clear_dirty();
            match self.fanout.flush(conn) {
                Flush::Gone(why) => self.remove(key, &why, now),
                flush => {
                    if conn.set_writable_interest(flush == Flush::Blocked) {
                        self.interest_changes.push(key);
                    }
                    if conn.resume_reading(&self.settings) {
                        self.unfinished_reads.push(key);
                    }
                }
            }
        }
    }

    /// A connection whose WRITABLE interest must change: its key, socket and whether it wants
    /// WRITABLE.
    pub fn pop_interest_change(&mut self) -> Option<(usize, &mut S, bool)> {
        // A key may have been reused since it was listed; its current wish is what counts.
        let key = loop {
            let key = self.interest_changes.pop()?;
            if self.conns.contains(key) {
                break key;
            }
        };
        let conn = self.conns.get_mut(key)?;
        let writable = conn.wants_writable();
        conn.socket_mut().map(|socket| (key, socket, writable))
    }

    /// The socket of a removed connection, to deregister.
    pub fn pop_released(&mut self) -> Option<S> {
        let socket = self.released.pop();
        if socket.is_none() && self.released.capacity() > RELEASED_KEPT {
            // A stream can be large (a TLS session is over a kilobyte): after a mass departure,
            // do not keep room for that many until the server empties.
            self.released.shrink_to(RELEASED_KEPT);
        }
        socket
    }

    /// Gives back what a crowd of connections left behind once the last of them is gone:
    /// otherwise the slab, the scratch lists and stale timers keep their peak capacity. Does
    /// nothing while connections remain or after a small crowd (keeping that capacity for the
    /// next clients costs next to nothing). True if memory was released.
    pub fn release_memory_after(&mut self, crowd: usize) -> bool {
        if !self.conns.is_empty() || self.conns.capacity() < crowd {
            return false;
        }
        info!("no connections left after a crowd of {}; releasing memory", self.conns.capacity());
        self.conns = Slab::new();
        self.timers.clear(); // every timer left belongs to a connection that is gone
        self.fanout.release_memory();
        self.unfinished_reads = Vec::new();
        self.effects = Vec::new();
        self.interest_changes = Vec::new();
        self.released = Vec::new();
        self.per_address = HashMap::new();
        self.requests = Vec::new();
        self.notices = Vec::new();
        self.held = HashSet::new();
        self.broker.release_memory();
        self.chat.release_memory();
        true
    }

    /// After a connection did something: flush it this turn if it has output, and make sure
    /// its next deadline is in the timer queue.
    fn after_activity(&mut self, key: usize, now: Instant) {
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.needs_flush() {
                self.fanout.mark_dirty(key, conn);
            }
            self.rearm(key, now);
        }
    }

    fn rearm(&mut self, key: usize, now: Instant) {
        let clock = self.clock(now);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(at) = conn.deadline(&clock, &self.settings) {
            if conn.arm_timer(at) {
                self.timers.schedule(key, at);
            }
        }
    }

    /// Milliseconds since the Unix epoch at `now`, for message timestamps.
    fn wall_ms(&self, now: Instant) -> u64 {
        self.started_wall_ms + now.saturating_duration_since(self.started).as_millis() as u64
    }

    fn clock(&self, now: Instant) -> Clock {
        Clock { now, ms: now.saturating_duration_since(self.started).as_millis() as u64 }
    }
}

/// A data message as it reaches the router.
enum Incoming<'a> {
    Text(&'a str),
    Binary(Bytes),
}
