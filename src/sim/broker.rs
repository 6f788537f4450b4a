//! [`SimBroker`]: one simulated process's Redis broker, over the simulated network of `net.rs`
//! instead of sockets. It is a model of `crate::cluster::RedisBroker`, rule for rule: the same
//! states (down with back-off, connecting, up), the same setup on each new link (forget the old
//! process id, heartbeat, bans, capability probe, own channels), the same bookkeeping of what
//! each command's reply answers ([`Expect`]), the same subscriptions (wanted, sent, live: a
//! room's history is loaded once its subscription is confirmed), the same origin tags telling
//! when a client's message is back (`in_flight`), and the same failure: the chat hears
//! [`Notice::Down`], every question Redis never answered is answered here by a
//! [`LocalBroker`], and room messages never confirmed come back as [`Notice::Unsent`].
//!
//! Only the wire differs: commands are [`Op`]s, not RESP, and the link is the simulated one;
//! the hard bound on replies awaited and the bound on unwritten bytes are left out (a
//! simulation never comes near them), the bans are read in one reply and handed over at once
//! (the real broker pages them: a simulation holds a handful), and sharded pub/sub is never
//! found. The real broker's
//! logic cannot be driven over an in-memory link as it stands (its `Link` is a mio socket in
//! the server's poll, and Redis's answers reach it as RESP frames), which is why this model
//! exists; the request-by-request translation lives in `requests.rs`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::net::{ConnId, Sent, SharedRedis};
use super::redis::Op;
use crate::broker::{Asker, Broker, Direct, LocalBroker, Notice, Request};
use crate::chat::{ClientId, Event, Stored};
use crate::cluster::broker::{
    CONNECT_TIMEOUT, FIRST_BACKOFF, MAX_BACKOFF, REPLY_TIMEOUT, SATURATED_AWAITED, SPARE_AWAITED,
};
use crate::cluster::presence;

/// What a reply on the command link answers, in the order the commands were sent (as
/// `crate::cluster`'s own `Expect`).
#[derive(Debug)]
pub(super) enum Expect {
    Nothing,
    Capability,
    Loaded { room: Rc<str>, display: Rc<str> },
    GuestNumber { client: ClientId, serial: u64 },
    Claimed { client: ClientId, nick: Rc<str>, serial: u64 },
    Who { asker: Asker, room: Rc<str> },
    Rooms { asker: Asker },
    Reached { asker: Asker, nick: Rc<str>, direct: Direct },
    Heartbeat,
    Bans,
    Said { room: Rc<str>, message: Stored, origin: ClientId },
}

impl Expect {
    /// The request to answer here when Redis never answered this (the link failed).
    fn unanswered(self) -> Option<Request> {
        Some(match self {
            Expect::GuestNumber { client, serial } => {
                Request::Claim { client, nick: None, signed: false, serial }
            }
            Expect::Claimed { client, nick, serial } => {
                Request::Claim { client, nick: Some(nick), signed: false, serial }
            }
            Expect::Who { asker, room } => Request::Who { asker, room },
            Expect::Rooms { asker } => Request::Rooms { asker },
            Expect::Reached { asker, nick, direct } => Request::Direct { asker, nick, direct },
            Expect::Said { .. }
            | Expect::Nothing
            | Expect::Capability
            | Expect::Loaded { .. }
            | Expect::Heartbeat
            | Expect::Bans => return None,
        })
    }
}

/// A client's own announcements (its joins, its nick changes) as they came back to its process,
/// by client: the origin tags say whose they are, which a client's frames cannot (two clients
/// may share a nick for a while after a link comes back). What the simulation's observers
/// read; the real broker has no such list.
pub type Echoes = Rc<RefCell<HashMap<ClientId, Vec<Event>>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Subscription {
    Wanted,
    Sent,
    Live,
}

pub(super) struct Followed {
    pub(super) display: Rc<str>,
    pub(super) subscription: Subscription,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Down { retry_at: Option<Instant> },
    Connecting { since: Instant },
    Up,
}

/// One process's broker to the simulated Redis.
pub struct SimBroker {
    pub(super) redis: SharedRedis,
    /// This process's number in the cluster (what the network cuts by).
    process: usize,
    conn: Option<ConnId>,
    state: State,
    /// Links made so far: each gets a new process id.
    links: u64,
    pub(super) pid: String,
    pub(super) capability_known: bool,
    pub(super) pending: VecDeque<Expect>,
    /// Sorted, so subscriptions go out in one order whatever the chat's hash maps do.
    pub(super) followed: BTreeMap<Rc<str>, Followed>,
    pub(super) unfollowed: Vec<Rc<str>>,
    pub(super) notices: Vec<Notice>,
    /// What this turn sends, written at its end.
    pub(super) outbox: Vec<Sent>,
    backoff: Duration,
    pub(super) history: usize,
    presence_ttl: Duration,
    next_heartbeat: Instant,
    reply_wait: Option<Instant>,
    leaving: bool,
    alone: LocalBroker,
    pub(super) in_flight: HashMap<ClientId, (u32, Instant)>,
    /// As `RedisBroker::unechoed`: a client's own announcement on its way.
    pub(super) unechoed: HashMap<ClientId, (Rc<str>, Event)>,
    pub(super) now: Instant,
    pub(super) echoes: Echoes,
}

impl SimBroker {
    /// Process `process`'s broker; it connects on its first turn. `echoes` hears its clients'
    /// own announcements as they come back.
    pub fn new(
        redis: SharedRedis,
        process: usize,
        (history, presence_ttl): (usize, Duration),
        echoes: Echoes,
        now: Instant,
    ) -> Self {
        Self {
            redis,
            process,
            conn: None,
            state: State::Down { retry_at: None },
            links: 0,
            pid: format!("p{process}x0"),
            capability_known: false,
            pending: VecDeque::new(),
            followed: BTreeMap::new(),
            unfollowed: Vec::new(),
            notices: Vec::new(),
            outbox: Vec::new(),
            backoff: FIRST_BACKOFF,
            history,
            presence_ttl,
            next_heartbeat: now,
            reply_wait: None,
            leaving: false,
            alone: LocalBroker::new(),
            in_flight: HashMap::new(),
            unechoed: HashMap::new(),
            now,
            echoes,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// A new link, under a new process id; what it sends first is queued.
    fn connect(&mut self, now: Instant) {
        self.state = State::Connecting { since: now };
        self.links += 1;
        let old_pid = std::mem::replace(&mut self.pid, format!("p{}x{}", self.process, self.links));
        self.capability_known = false;
        self.conn = Some(self.redis.borrow_mut().connect(self.process, now));
        self.queue_setup(old_pid);
        self.next_heartbeat = now + self.presence_ttl / 3;
    }

    /// The real broker's setup: the old id forgotten, alive before anything is claimed, the
    /// bans in force, the capability probe, then its own channels.
    fn queue_setup(&mut self, old_pid: String) {
        self.command(Expect::Nothing, Op::Forget { pid: old_pid });
        self.command(Expect::Nothing, self.heartbeat());
        self.command(Expect::Bans, Op::Hgetall { key: presence::BANS.to_string() });
        self.command(Expect::Capability, Op::Capability);
        let own = vec![presence::process_channel(0, &self.pid), presence::bans_channel(0)];
        self.outbox.push(Sent::Subscribe(own));
    }

    pub(super) fn heartbeat(&self) -> Op {
        Op::Heartbeat { pid: self.pid.clone(), ttl_ms: self.presence_ttl.as_millis() as u64 }
    }

    /// Queues one command, awaiting `expect`.
    pub(super) fn command(&mut self, expect: Expect, op: Op) {
        self.pending.push_back(expect);
        self.outbox.push(Sent::Command(op));
    }

    /// The link is dropped; the chat hears it if it was up, and every question Redis never
    /// answered is answered here; a retry is scheduled.
    pub(super) fn fail(&mut self) {
        let was_up = self.is_up();
        if let Some(conn) = self.conn.take() {
            self.redis.borrow_mut().close(conn);
        }
        self.state = State::Down { retry_at: Some(self.now + self.backoff) };
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.reply_wait = None;
        self.followed.clear();
        self.unfollowed.clear();
        self.in_flight.clear();
        self.outbox.clear();
        if was_up {
            self.notices.push(Notice::Down);
        }
        for (client, (room, event)) in std::mem::take(&mut self.unechoed) {
            self.echo(client, &event);
            self.alone.request(Request::Announce { room, event, origin: Some(client) });
        }
        for expected in std::mem::take(&mut self.pending) {
            match expected {
                Expect::Said { room, message, origin } => {
                    self.notices.push(Notice::Unsent { room, message, origin })
                }
                other => {
                    if let Some(request) = other.unanswered() {
                        self.alone.request(request);
                    }
                }
            }
        }
        self.alone.take_notices(&mut self.notices);
    }

    /// The capability is known: the cluster is reachable.
    pub(super) fn maybe_up(&mut self) {
        if matches!(self.state, State::Connecting { .. }) && self.capability_known {
            self.state = State::Up;
            self.backoff = FIRST_BACKOFF;
            self.alone.clear();
            self.notices.push(Notice::Up);
        }
    }

    /// A client's room message or event left for Redis.
    pub(super) fn sent_by(&mut self, client: ClientId) {
        let entry = self.in_flight.entry(client).or_insert((0, self.now));
        *entry = (entry.0 + 1, self.now);
    }

    /// A client's own announcement came back (or, while the link is down, was made here).
    pub(super) fn echo(&self, client: ClientId, event: &Event) {
        self.echoes.borrow_mut().entry(client).or_default().push(event.clone());
    }

    /// A room message or event came back with this ORIGIN; the client it names, if ours.
    pub(super) fn came_back(&mut self, origin: &[u8]) -> Option<ClientId> {
        let (pid, client) = std::str::from_utf8(origin).ok()?.split_once(':')?;
        let client = client.parse().ok().filter(|_| pid == self.pid)?;
        if let Some((count, _)) = self.in_flight.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                self.in_flight.remove(&client);
                self.unechoed.remove(&client);
            }
        }
        Some(client)
    }

    /// What has arrived on the link, handled in order; a closed link fails.
    fn read(&mut self) {
        let Some(conn) = self.conn else { return };
        let awaited = self.pending.len();
        let arrived = self.redis.borrow_mut().receive(conn, self.now);
        let Some(arrived) = arrived else { return self.fail() };
        for arrival in arrived {
            if self.on_arrival(arrival).is_err() {
                return self.fail();
            }
        }
        self.maybe_up();
        if self.pending.is_empty() {
            self.reply_wait = None;
        } else if self.pending.len() < awaited {
            self.reply_wait = Some(self.now);
        }
    }

    /// Reconnects when due; fails a link whose replies are overdue; beats the heart; lets go of
    /// clients whose messages never came back.
    fn on_timer(&mut self, now: Instant) {
        match self.state {
            State::Up if self.reply_wait.is_some_and(|since| now >= since + REPLY_TIMEOUT) => self.fail(),
            State::Up if now >= self.next_heartbeat && !self.leaving => {
                self.next_heartbeat = now + self.presence_ttl / 3;
                let heartbeat = self.heartbeat();
                self.command(Expect::Heartbeat, heartbeat);
            }
            State::Down { retry_at } if retry_at.is_none_or(|at| now >= at) => self.connect(now),
            State::Connecting { since } if now >= since + CONNECT_TIMEOUT => self.fail(),
            _ => {}
        }
        if !self.in_flight.is_empty() {
            self.in_flight.retain(|_, (_, last)| now < *last + REPLY_TIMEOUT);
            let in_flight = &self.in_flight;
            self.unechoed.retain(|client, _| in_flight.contains_key(client));
        }
    }

    /// End of turn: this turn's (un)subscriptions, then everything queued leaves.
    fn flush(&mut self, now: Instant) {
        if !self.pending.is_empty() && self.reply_wait.is_none() {
            self.reply_wait = Some(now);
        }
        if self.is_up() {
            self.queue_subscriptions();
        }
        let Some(conn) = self.conn else { return self.outbox.clear() };
        let mut redis = self.redis.borrow_mut();
        for sent in self.outbox.drain(..) {
            redis.send(conn, sent, now);
        }
    }

    fn queue_subscriptions(&mut self) {
        let gone: Vec<String> = std::mem::take(&mut self.unfollowed)
            .into_iter()
            .filter(|room| !self.followed.contains_key(room))
            .map(|room| crate::cluster::room::channel(0, &room))
            .collect();
        if !gone.is_empty() {
            self.outbox.push(Sent::Unsubscribe(gone));
        }
        let mut wanted = Vec::new();
        for (room, followed) in &mut self.followed {
            if followed.subscription == Subscription::Wanted {
                followed.subscription = Subscription::Sent;
                wanted.push(crate::cluster::room::channel(0, room));
            }
        }
        if !wanted.is_empty() {
            self.outbox.push(Sent::Subscribe(wanted));
        }
    }
}

impl Broker for SimBroker {
    fn request(&mut self, request: Request) {
        if !self.is_up() {
            if let Request::Announce { event, origin: Some(client), .. } = &request {
                self.echo(*client, event);
            }
            return self.alone.request(request);
        }
        self.send(request);
    }

    fn take_notices(&mut self, into: &mut Vec<Notice>) {
        into.append(&mut self.notices);
        self.alone.take_notices(into);
    }

    fn in_flight(&self, client: ClientId) -> bool {
        self.in_flight.contains_key(&client)
    }

    fn is_saturated(&self) -> bool {
        self.pending.len() >= SATURATED_AWAITED
    }

    fn has_spare_room(&self) -> bool {
        self.pending.len() < SPARE_AWAITED
    }

    fn forget(&mut self, client: ClientId) {
        self.in_flight.remove(&client);
        self.unechoed.remove(&client);
    }

    fn linked(&self) -> Option<bool> {
        Some(self.is_up())
    }

    fn on_turn(&mut self, now: Instant) {
        self.now = now;
        self.read();
        self.on_timer(now);
    }

    fn end_turn(&mut self, now: Instant) {
        self.now = now;
        self.flush(now);
    }

    fn wake_at(&self, _now: Instant) -> Option<Instant> {
        let released = self.in_flight.values().map(|(_, last)| *last + REPLY_TIMEOUT).min();
        let link = match self.state {
            State::Down { retry_at } => Some(retry_at.unwrap_or(self.now)),
            State::Connecting { since } => Some(since + CONNECT_TIMEOUT),
            State::Up => {
                let heartbeat = (!self.leaving).then_some(self.next_heartbeat);
                let stuck = self.reply_wait.map(|since| since + REPLY_TIMEOUT);
                heartbeat.into_iter().chain(stuck).min()
            }
        };
        link.into_iter().chain(released).min()
    }

    fn leave(&mut self, now: Instant) {
        self.leaving = true;
        if self.is_up() {
            self.command(Expect::Nothing, Op::Forget { pid: self.pid.clone() });
            self.flush(now);
        }
    }
}
