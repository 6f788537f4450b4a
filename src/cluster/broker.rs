//! The Redis broker's life: this process's two Redis connections, one for commands (pipelined:
//! whatever a loop turn asks for leaves in one write, and replies come back in order) and one
//! for subscriptions (Redis only pushes on a connection that subscribed), and everything needed
//! to keep them working: connecting without blocking, detecting sharded pub/sub, loading the
//! scripts, heartbeats, reconnecting with back-off, and the bounds on what waits on Redis.
//!
//! Nothing here waits: a connect, a reply or a subscription confirmation is an event like a
//! client's, and a Redis that is slow or gone costs a dropped link and a retry, never a stalled
//! loop. The first failure of an outage is logged as a warning, the retries quietly. While the
//! link is not up, the broker is an in-process broker ([`LocalBroker`]): the chat carries on
//! alone, and every question asked of Redis that it never answered is answered here.
//!
//! **Flow.** A client's room message or event is *in flight* from its publish until the chat
//! has it back from the subscription (`flight.rs`): the hub does not read a client with
//! something in flight, so a fast client is slowed to what Redis carries, and its own line
//! comes back before the answer to anything it sends next. Past [`SATURATED_AWAITED`] commands
//! awaiting replies, or [`SATURATED_UNWRITTEN`] bytes of commands unwritten, the broker is
//! *saturated* and the hub reads no client until it is not; a relink's claims go only while it
//! is under half of both ([`SPARE_AWAITED`]). No client's pace drops the link: it
//! is dropped when Redis stops answering ([`REPLY_TIMEOUT`]), refuses a command or sends what is
//! not a reply, or at the hard bound [`MAX_AWAITED`], which the soft bounds keep clients from
//! reaching; every question it was asked and never answered is then answered here.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::{Registry, Token};

use super::bans::BansLoad;
use super::batch::Batches;
use super::expect::{Expect, Scripts};
use super::flight::InFlight;
use super::followed::Followed;
use super::link::{Dialer, Link};
use super::presence;
use super::refresh::Renewals;
use super::resp::{Frame, Limits};
use super::tcp::TcpDialer;
use super::url::RedisUrl;
use crate::broker::{Broker, LocalBroker, Notice, Request};
use crate::chat::ClientId;

/// First wait before reconnecting; it doubles per failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A connect that has not finished by then is abandoned (a host that drops SYNs).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Replies are awaited and none has come for this long: Redis is stuck, the link is dropped
/// (and whoever waits on an answer is answered here). A client's message not back from the
/// subscription by then no longer holds the client.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Commands awaiting their replies past which the hub stops reading clients.
pub const SATURATED_AWAITED: usize = 10_000;
/// Bytes of commands not yet written to Redis past which the hub stops reading clients.
pub const SATURATED_UNWRITTEN: usize = 8 << 20;
/// Commands awaiting replies past which work no client waits on (a relink's claims) waits:
/// clients keep the other half of [`SATURATED_AWAITED`].
pub const SPARE_AWAITED: usize = SATURATED_AWAITED / 2;
/// Commands awaiting their replies, at most: past it Redis is too slow to be of use, and the
/// link is dropped. The saturation bounds keep clients far from it.
pub const MAX_AWAITED: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not connected; the next attempt is due at this time.
    Down {
        retry_at: Instant,
    },
    /// Connecting (or setting up) since this time.
    Connecting {
        since: Instant,
    },
    Up,
}

/// The two links and the cluster's state as this process sees it.
pub struct RedisBroker {
    pub(super) url: RedisUrl,
    dialer: Box<dyn Dialer>,
    pub(super) cmd: Link,
    pub(super) sub: Link,
    state: State,
    /// Redis has SPUBLISH/SSUBSCRIBE (7.0 and later).
    pub(super) sharded: bool,
    pub(super) capability_known: bool,
    pub(super) pending: VecDeque<Expect>,
    /// Room messages gathered by room until they are queued: this turn's, and a busy room's
    /// lone message lingering for company (`batch.rs`).
    pub(super) batches: Batches,
    /// When each room's expiry in Redis was last renewed by this process (`refresh.rs`).
    pub(super) renewals: Renewals,
    pub(super) followed: HashMap<Rc<str>, Followed>,
    /// Rooms unfollowed this turn, to unsubscribe from in one command.
    pub(super) unfollowed: Vec<Rc<str>>,
    pub(super) notices: Vec<Notice>,
    backoff: Duration,
    /// The current outage has been logged.
    warned: bool,
    frames: Vec<Frame>,
    /// A push's notices, each with its ORIGIN, as read (kept for its capacity).
    pub(super) heard: Vec<(Notice, bytes::Bytes)>,
    pub(super) scripts: Scripts,
    /// `--history`: how long each room's log in Redis is.
    pub(super) history: usize,
    /// This process's name in presence entries and payload origins, new for every link.
    pub(super) pid: String,
    /// `--presence-ttl`: how long this process counts as alive after its last heartbeat.
    presence_ttl: Duration,
    next_heartbeat: Instant,
    /// Since when replies have been awaited without one arriving.
    reply_wait: Option<Instant>,
    /// How many times the broker became saturated (for operators), and whether it is now.
    saturations: (u64, bool),
    /// Shutting down: no more heartbeats, so this process stays dead in Redis's eyes.
    leaving: bool,
    /// The broker while the link is not up.
    alone: LocalBroker,
    /// The link failed and the chat has not taken the news yet (see `request`).
    down_untold: bool,
    /// What clients have on its way through Redis (see `flight.rs`).
    pub(super) flight: InFlight,
    /// The turn's time, for what is stamped between events.
    pub(super) now: Instant,
    /// The bans in Redis, read a page at a time at connect and handed to the chat a turn's
    /// share at a time.
    pub(super) bans: BansLoad,
}

impl RedisBroker {
    /// A broker for the Redis at `url`, on these two poll tokens; it connects on its first turn.
    /// `history` and `max_message_size` are the flags: the largest reply Redis may rightly send
    /// (a room's whole history) is bounded by them.
    pub fn new(
        url: RedisUrl,
        flags: (usize, usize),
        presence_ttl: Duration,
        registry: &Registry,
        tokens: (Token, Token),
        now: Instant,
    ) -> io::Result<Self> {
        let addr = url.resolve().map_err(|e| io::Error::new(e.kind(), format!("--redis {url}: {e}")))?;
        let dialer = TcpDialer::new(addr, registry)?;
        Ok(Self::with_dialer(url, flags, presence_ttl, Box::new(dialer), tokens, now))
    }

    /// A broker whose links are `dialer`'s sockets (the simulation's Redis, for one): `url`
    /// still names the database, the credentials and the Redis in the logs.
    pub fn with_dialer(
        url: RedisUrl,
        (history, max_message_size): (usize, usize),
        presence_ttl: Duration,
        dialer: Box<dyn Dialer>,
        tokens: (Token, Token),
        now: Instant,
    ) -> Self {
        let limits = Limits::for_flags(history, max_message_size);
        let mut dialer = dialer;
        let pid = dialer.link_name();
        Self {
            url,
            dialer,
            cmd: Link::with_limits(tokens.0, limits),
            sub: Link::with_limits(tokens.1, limits),
            state: State::Down { retry_at: now },
            sharded: false,
            capability_known: false,
            pending: VecDeque::new(),
            batches: Batches::default(),
            renewals: Renewals::new(now),
            followed: HashMap::new(),
            unfollowed: Vec::new(),
            notices: Vec::new(),
            backoff: FIRST_BACKOFF,
            warned: false,
            frames: Vec::new(),
            heard: Vec::new(),
            scripts: Scripts::new(),
            history,
            pid,
            presence_ttl,
            next_heartbeat: now,
            reply_wait: None,
            saturations: (0, false),
            leaving: false,
            alone: LocalBroker::new(),
            flight: InFlight::new(REPLY_TIMEOUT),
            down_untold: false,
            now,
            bans: BansLoad::default(),
        }
    }

    fn is_up(&self) -> bool {
        self.state == State::Up
    }

    fn connect(&mut self, now: Instant) {
        self.state = State::Connecting { since: now };
        // A new name for each link: entries written under the old one (members who left while
        // Redis was away) die with it, and the chat writes the live ones again.
        let old_pid = std::mem::replace(&mut self.pid, self.dialer.link_name());
        self.capability_known = false;
        let dialer = &mut *self.dialer;
        let started = self.cmd.connect(dialer).and_then(|()| self.sub.connect(dialer));
        if let Err(e) = started.and_then(|()| self.queue_setup(&old_pid)) {
            return self.fail(&format!("cannot connect: {e}"));
        }
        self.next_heartbeat = now + self.presence_ttl / 3;
    }

    /// What a new link sends first: credentials, the database, the scripts, this process's
    /// heartbeat, the first page of the bans in force, the capability probe, and its own channels.
    fn queue_setup(&mut self, old_pid: &str) -> io::Result<()> {
        if let Some((user, password)) = self.url.auth.clone() {
            let mut auth = vec!["AUTH"];
            auth.extend(user.as_deref());
            auth.push(&password);
            // The subscription link's answer is a plain OK, which the push reader lets pass.
            self.sub.queue(&auth)?;
            self.command(Expect::Nothing, &auth)?;
        }
        // Keys live in the URL's database; channels are global, and name the database.
        self.command(Expect::Nothing, &["SELECT", &self.url.db.to_string()])?;
        self.command(Expect::Nothing, &["ZREM", presence::PROCS, old_pid])?;
        for text in self.scripts.texts() {
            self.command(Expect::Nothing, &["SCRIPT", "LOAD", &text])?;
        }
        // Alive before anything is claimed in this process's name.
        self.pending.push_back(Expect::Nothing);
        self.queue_heartbeat()?;
        self.ask_bans(b"0")?;
        self.command(Expect::Capability, &["COMMAND", "INFO", "SPUBLISH"])?;
        // This process's own channel (private messages, kicks) and the bans, for as long as
        // the link lasts.
        let (own, bans) =
            (presence::process_channel(self.url.db, &self.pid), presence::bans_channel(self.url.db));
        self.sub.queue(&["SUBSCRIBE", &own, &bans])
    }

    /// Queues one command on the command link, awaiting `expect`.
    pub(super) fn command<A: AsRef<[u8]>>(&mut self, expect: Expect, args: &[A]) -> io::Result<()> {
        self.pending.push_back(expect);
        self.cmd.queue(args)
    }

    pub(super) fn queue_heartbeat(&mut self) -> io::Result<()> {
        let (pid, ttl) = (self.pid.clone(), self.presence_ttl.as_millis().to_string());
        self.eval(|s| &s.heartbeat, &[presence::PROCS], &[&pid, &ttl])
    }

    /// Both links are dropped; the chat hears it if they were up, and every question Redis
    /// never answered is answered here; a retry is scheduled.
    fn fail(&mut self, why: &str) {
        let was_up = self.is_up();
        if !self.warned {
            warn!("Redis at {}: {why}; chat goes on on this server alone, reconnecting", self.url);
            self.warned = true;
        } else {
            debug!("Redis at {}: {why}", self.url);
        }
        self.cmd.close();
        self.sub.close();
        self.state = State::Down { retry_at: self.now + self.backoff };
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.reply_wait = None;
        self.followed.clear();
        self.unfollowed.clear();
        self.renewals.forget();
        let unechoed = self.flight.clear();
        self.bans = BansLoad::default();
        if was_up {
            self.notices.push(Notice::Down);
            self.down_untold = true;
        }
        for (client, (room, event)) in unechoed {
            self.alone.request(Request::Announce { room, event, origin: Some(client) });
        }
        let unqueued: Vec<Expect> = self
            .batches
            .take()
            .into_iter()
            .map(|b| Expect::Said { room: b.room.clone(), said: b.messages() })
            .collect();
        for expected in std::mem::take(&mut self.pending).into_iter().chain(unqueued) {
            match expected {
                // Messages Redis never answered: said on this process rather than lost (Redis
                // may have published some before it failed; see `Notice::Unsent`).
                Expect::Said { room, said } => {
                    for (message, origin) in said {
                        self.notices.push(Notice::Unsent { room: room.clone(), message, origin });
                    }
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

    /// `--redis-linger`: how long a lone room message may wait for company (`batch.rs`). Set
    /// before the first message.
    pub fn set_linger(&mut self, linger: Duration) {
        self.batches = Batches::new(linger);
    }

    /// Both links connected and the capability known: the cluster is reachable.
    pub(super) fn maybe_up(&mut self) {
        if matches!(self.state, State::Connecting { .. })
            && self.cmd.is_connected()
            && self.sub.is_connected()
            && self.capability_known
        {
            let kind = if self.sharded { "sharded pub/sub" } else { "pub/sub" };
            info!("connected to Redis at {} ({kind}); rooms are shared with the other servers", self.url);
            self.state = State::Up;
            self.backoff = FIRST_BACKOFF;
            self.warned = false;
            self.alone.clear();
            self.notices.push(Notice::Up);
        }
    }

    /// A client's room message or event left for Redis.
    pub(super) fn sent_by(&mut self, client: ClientId) {
        self.flight.sent_by(client, self.now);
    }

    /// A room message or event came back from the subscription with this ORIGIN: the
    /// connection of this process it came from, if it is still here.
    pub(super) fn came_back(&mut self, origin: &[u8]) -> Option<ClientId> {
        let (pid, client) = std::str::from_utf8(origin).ok()?.split_once(':')?;
        let client = client.parse().ok().filter(|_| pid == self.pid)?;
        self.flight.came_back(client)
    }

    /// End of turn: this turn's (un)subscriptions in one command each, then one write per link.
    fn flush(&mut self, now: Instant) {
        // The turn's batches first (but lone messages that linger): they await replies too,
        // and the wait starts now.
        if let Err(e) = self.queue_due_batches() {
            return self.fail(&e.to_string());
        }
        if !self.pending.is_empty() && self.reply_wait.is_none() {
            self.reply_wait = Some(now);
        }
        if let Err(e) = self.write() {
            return self.fail(&e.to_string());
        }
        // What waits on Redis is at its most now, the turn's commands sent: as the hub finds it.
        let saturated = self.is_saturated();
        self.saturations = (self.saturations.0 + u64::from(saturated && !self.saturations.1), saturated);
    }

    fn write(&mut self) -> io::Result<()> {
        if self.is_up() {
            self.queue_subscriptions()?;
        }
        self.cmd.flush()?;
        self.sub.flush()
    }

    fn handle_event(&mut self, token: Token, readable: bool, writable: bool) -> io::Result<()> {
        let is_cmd = token == self.cmd.token();
        let link = if is_cmd { &mut self.cmd } else { &mut self.sub };
        if !link.is_open() {
            return Ok(());
        }
        if writable {
            link.on_writable()?;
            // A finished connect sends what was queued; a blocked write resumes.
            link.flush()?;
        }
        if readable {
            let mut frames = std::mem::take(&mut self.frames);
            let read = link.read(&mut frames);
            let handled = frames.drain(..).try_for_each(|frame| {
                if is_cmd {
                    self.on_reply(frame)
                } else {
                    self.on_push(frame)
                }
            });
            self.frames = frames;
            read?;
            handled?;
        }
        self.maybe_up();
        Ok(())
    }

    /// Reconnects when due; abandons a connect that takes too long; beats the heart; lets go
    /// of clients whose messages never came back.
    fn on_timer(&mut self, now: Instant) {
        match self.state {
            State::Up if self.reply_wait.is_some_and(|since| now >= since + REPLY_TIMEOUT) => {
                self.fail(&format!("no reply for {}s", REPLY_TIMEOUT.as_secs()))
            }
            State::Up if now >= self.next_heartbeat && !self.leaving => {
                self.next_heartbeat = now + self.presence_ttl / 3;
                self.pending.push_back(Expect::Heartbeat);
                if let Err(e) = self.queue_heartbeat() {
                    self.fail(&e.to_string());
                }
            }
            State::Down { retry_at } if now >= retry_at => self.connect(now),
            State::Connecting { since } if now >= since + CONNECT_TIMEOUT => {
                self.fail("connecting timed out")
            }
            _ => {}
        }
        self.flight.expire(now);
    }

    fn read_unfinished(&mut self, now: Instant) {
        for token in [self.cmd.token(), self.sub.token()] {
            let link = if token == self.cmd.token() { &self.cmd } else { &self.sub };
            if link.has_unfinished_read() {
                self.on_event(token, true, false, now);
            }
        }
    }
}

impl Broker for RedisBroker {
    fn request(&mut self, request: Request) {
        log::trace!("cluster request: {request:?}");
        if self.is_up() && self.pending.len() >= MAX_AWAITED {
            self.fail(&format!("over {MAX_AWAITED} commands awaiting replies"));
        }
        if self.is_up() {
            if let Err(e) = self.send(request) {
                self.fail(&e.to_string());
            }
            return;
        }
        match request {
            // Asked in the turn the link failed, before the chat heard it and followed its rooms
            // here: said again once it has (like a line Redis never confirmed). Once the chat
            // has heard, a room not followed here has nobody here to say it to: the in-process
            // broker drops it (handing it back again would loop for ever).
            Request::Say { room, message, origin, .. } if self.down_untold && !self.alone.follows(&room) => {
                self.notices.push(Notice::Unsent { room, message, origin })
            }
            request => self.alone.request(request),
        }
    }

    fn take_notices(&mut self, into: &mut Vec<Notice>) {
        self.down_untold = false;
        self.flight.release_returned();
        into.append(&mut self.notices);
        self.alone.take_notices(into);
    }

    fn in_flight(&self, client: ClientId) -> bool {
        self.flight.holds(client)
    }

    fn is_saturated(&self) -> bool {
        self.pending.len() >= SATURATED_AWAITED || self.cmd.queued() >= SATURATED_UNWRITTEN
    }

    fn has_spare_room(&self) -> bool {
        self.pending.len() < SPARE_AWAITED && self.cmd.queued() < SATURATED_UNWRITTEN / 2
    }

    fn forget(&mut self, client: ClientId) {
        self.flight.forget(client);
    }

    fn linked(&self) -> Option<bool> {
        Some(self.is_up())
    }

    fn saturations(&self) -> Option<u64> {
        Some(self.saturations.0)
    }

    fn owns(&self, token: Token) -> bool {
        token == self.cmd.token() || token == self.sub.token()
    }

    fn on_event(&mut self, token: Token, readable: bool, writable: bool, now: Instant) {
        self.now = now;
        let awaited = self.pending.len();
        if let Err(e) = self.handle_event(token, readable, writable) {
            return self.fail(&e.to_string());
        }
        if self.pending.is_empty() {
            self.reply_wait = None;
        } else if self.pending.len() < awaited {
            self.reply_wait = Some(now);
        }
    }

    fn on_turn(&mut self, now: Instant) {
        self.now = now;
        self.read_unfinished(now);
        self.on_timer(now);
        if let Err(e) = self.load_bans() {
            self.fail(&e.to_string());
        }
    }

    fn end_turn(&mut self, now: Instant) {
        self.now = now;
        self.flush(now);
    }

    fn holds_unsent(&self) -> bool {
        self.batches.next_due().is_some()
    }

    fn wake_at(&self, now: Instant) -> Option<Instant> {
        if self.cmd.has_unfinished_read() || self.sub.has_unfinished_read() || self.bans.has_work() {
            return Some(now);
        }
        let released = self.flight.next_expiry().into_iter().chain(self.batches.next_due()).min();
        let link = match self.state {
            State::Down { retry_at } => Some(retry_at),
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
            // What lingers goes before the process stops counting as present.
            let _ = self.queue_batches();
            let _ = self.command(Expect::Nothing, &["ZREM", presence::PROCS, &self.pid.clone()]);
            self.flush(now);
        }
    }
}
