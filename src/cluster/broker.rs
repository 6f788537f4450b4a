//! The broker: this process's two Redis connections, one for commands (pipelined: whatever a
//! loop turn asks for leaves in one write, and replies come back in order) and one for
//! subscriptions (Redis only pushes on a connection that subscribed), and everything needed to
//! keep them working: connecting without blocking, detecting sharded pub/sub, loading the
//! scripts, reconnecting with back-off, and turning the chat's [`Request`]s into commands and
//! what Redis sends back into [`Notice`]s.
//!
//! Nothing here waits: a connect, a reply or a subscription confirmation is an event like a
//! client's, and a Redis that is slow, flooded or gone costs a dropped link and a retry, never
//! a stalled loop. The first failure of an outage is logged as a warning, the retries quietly.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::{Registry, Token};

use super::link::Link;
use super::resp::{self, Frame};
use super::{presence, room};
use super::{Asker, Direct, Notice, Request};
use crate::chat::history::new_epoch;
use crate::chat::names::fold;
use crate::chat::ClientId;

/// First wait before reconnecting; it doubles per failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A connect that has not finished by then is abandoned (a host that drops SYNs).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Replies are awaited and none has come for this long: Redis is stuck, the link is dropped
/// (and whoever waits on an answer, a connection's nick claim say, is settled locally).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Commands awaiting their replies, at most (what each will be answered with is kept).
pub const MAX_AWAITED: usize = 100_000;

/// Where Redis is: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub db: u32,
    /// AUTH's arguments: the password, or the user and the password.
    pub auth: Option<(Option<String>, String)>,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never a password in a log line.
        write!(f, "{self}")
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
    }
}

impl RedisUrl {
    /// Parses `redis://HOST[:PORT][/DB]`, with `[USER]:PASSWORD@` before the host if Redis
    /// asks for one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let example = "try redis://127.0.0.1:6379 or redis://:PASSWORD@HOST:6379/0";
        let rest = text
            .strip_prefix("redis://")
            .ok_or_else(|| format!("not a redis:// URL: {text:?} ({example})"))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => {
                let (user, password) = credentials
                    .split_once(':')
                    .ok_or_else(|| format!("credentials must be USER:PASSWORD or :PASSWORD ({example})"))?;
                let user = (!user.is_empty()).then(|| user.to_string());
                (Some((user, password.to_string())), rest)
            }
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((hostport, "")) => (hostport, 0),
            Some((hostport, db)) => {
                (hostport, db.parse().map_err(|_| format!("not a database number: {db:?} ({example})"))?)
            }
            None => (rest, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || hostport.starts_with('[') => {
                (host, port.parse().map_err(|_| format!("not a port: {port:?} ({example})"))?)
            }
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("no host in {text:?} ({example})"));
        }
        Ok(Self { host: host.to_string(), port, db, auth })
    }

    /// The address to connect to (a name is looked up once, at start).
    pub fn resolve(&self) -> io::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{} names no address", self.host)))
    }
}

/// What a reply on the command link answers, in the order the commands were sent.
#[derive(Debug)]
enum Expect {
    /// Setup and publishes: only an error matters.
    Nothing,
    /// `COMMAND INFO SPUBLISH`: whether sharded pub/sub exists (Redis 7).
    Capability,
    Loaded {
        room: Rc<str>,
        display: Rc<str>,
    },
    Claimed {
        client: ClientId,
        nick: Rc<str>,
        serial: u64,
    },
    Who {
        asker: Asker,
        room: Rc<str>,
    },
    Rooms {
        asker: Asker,
    },
    Reached {
        asker: Asker,
        nick: Rc<str>,
        direct: Direct,
    },
    /// A periodic heartbeat: 0 back means this process had already expired.
    Heartbeat,
    /// Every ban in force, at connect.
    Bans,
    /// A room message: if the link fails before Redis answers, it goes back to the chat.
    Said {
        room: Rc<str>,
        body: String,
    },
}

/// A Lua script and its SHA-1 (its name for EVALSHA).
struct Script {
    text: String,
    sha: String,
}

impl Script {
    fn new(text: String) -> Self {
        Self { sha: room::script_sha(&text), text }
    }
}

/// Every script the broker runs, loaded on each connect.
struct Scripts {
    say: Script,
    load: Script,
    heartbeat: Script,
    claim: Script,
    live: Script,
    direct: Script,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscription {
    /// Asked for by the chat; SSUBSCRIBE goes with this turn's write.
    Wanted,
    /// Sent, not yet confirmed.
    Sent,
    /// Confirmed: messages arrive, and the history load has been sent.
    Live,
}

struct Followed {
    display: Rc<str>,
    subscription: Subscription,
}

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
pub struct Broker {
    url: RedisUrl,
    addr: SocketAddr,
    cmd: Link,
    sub: Link,
    state: State,
    /// Redis has SPUBLISH/SSUBSCRIBE (7.0 and later).
    sharded: bool,
    capability_known: bool,
    pending: VecDeque<Expect>,
    followed: HashMap<Rc<str>, Followed>,
    /// Rooms unfollowed this turn, to unsubscribe from in one command.
    unfollowed: Vec<Rc<str>>,
    notices: Vec<Notice>,
    backoff: Duration,
    /// The current outage has been logged.
    warned: bool,
    frames: Vec<Frame>,
    scripts: Scripts,
    /// `--history`: how long each room's log in Redis is.
    history: usize,
    /// This process's name in presence entries, random per run.
    pid: String,
    /// `--presence-ttl`: how long this process counts as alive after its last heartbeat.
    presence_ttl: Duration,
    next_heartbeat: Instant,
    /// Since when replies have been awaited without one arriving.
    reply_wait: Option<Instant>,
    /// Shutting down: no more heartbeats, so this process stays dead in Redis's eyes.
    leaving: bool,
}

impl Broker {
    /// A broker for the Redis at `url`, using these two poll tokens; it connects on [`start`](Self::start).
    pub fn new(
        url: RedisUrl,
        history: usize,
        presence_ttl: Duration,
        tokens: (Token, Token),
        now: Instant,
    ) -> io::Result<Self> {
        let addr = url.resolve().map_err(|e| io::Error::new(e.kind(), format!("--redis {url}: {e}")))?;
        Ok(Self {
            url,
            addr,
            cmd: Link::new(tokens.0),
            sub: Link::new(tokens.1),
            state: State::Down { retry_at: now },
            sharded: false,
            capability_known: false,
            pending: VecDeque::new(),
            followed: HashMap::new(),
            unfollowed: Vec::new(),
            notices: Vec::new(),
            backoff: FIRST_BACKOFF,
            warned: false,
            frames: Vec::new(),
            scripts: Scripts {
                say: Script::new(room::say_script()),
                load: Script::new(room::load_script()),
                heartbeat: Script::new(presence::heartbeat_script()),
                claim: Script::new(presence::claim_script()),
                live: Script::new(presence::live_entries_script()),
                direct: Script::new(presence::direct_script()),
            },
            history,
            pid: new_epoch().to_string(),
            presence_ttl,
            next_heartbeat: now,
            reply_wait: None,
            leaving: false,
        })
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// Whether `token` is one of the broker's links.
    pub fn owns(&self, token: Token) -> bool {
        token == self.cmd.token() || token == self.sub.token()
    }

    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// When the broker next needs the loop without an event: a reconnect, a connect deadline,
    /// or the next heartbeat.
    pub fn wake_at(&self) -> Option<Instant> {
        match self.state {
            State::Down { retry_at } => Some(retry_at),
            State::Connecting { since } => Some(since + CONNECT_TIMEOUT),
            State::Up => {
                let heartbeat = (!self.leaving).then_some(self.next_heartbeat);
                let stuck = self.reply_wait.map(|since| since + REPLY_TIMEOUT);
                heartbeat.into_iter().chain(stuck).min()
            }
        }
    }

    /// This process's id in presence entries.
    pub fn pid(&self) -> &str {
        &self.pid
    }

    /// Clean shutdown: this process stops counting as alive at once, so its members leave
    /// `/who` now rather than at the presence expiry.
    pub fn leave(&mut self, registry: &Registry, now: Instant) {
        self.leaving = true;
        if self.state == State::Up {
            self.pending.push_back(Expect::Nothing);
            let _ = self.cmd.queue(&["ZREM", presence::PROCS, &self.pid]);
            self.flush(registry, now);
        }
    }

    /// A link stopped reading at its turn budget: read again next turn without waiting.
    pub fn has_unfinished_reads(&self) -> bool {
        self.cmd.has_unfinished_read() || self.sub.has_unfinished_read()
    }

    /// What happened since the last call.
    pub fn take_notices(&mut self, into: &mut Vec<Notice>) {
        into.append(&mut self.notices);
    }

    /// Reconnects when due; abandons a connect that takes too long; beats the heart.
    pub fn on_timer(&mut self, registry: &Registry, now: Instant) {
        match self.state {
            State::Up if self.reply_wait.is_some_and(|since| now >= since + REPLY_TIMEOUT) => {
                self.fail(registry, now, &format!("no reply for {}s", REPLY_TIMEOUT.as_secs()))
            }
            State::Up if now >= self.next_heartbeat && !self.leaving => {
                self.next_heartbeat = now + self.presence_ttl / 3;
                self.pending.push_back(Expect::Heartbeat);
                if let Err(e) = self.queue_heartbeat() {
                    self.fail(registry, now, &e.to_string());
                }
            }
            State::Down { retry_at } if now >= retry_at => self.connect(registry, now),
            State::Connecting { since } if now >= since + CONNECT_TIMEOUT => {
                self.fail(registry, now, "connecting timed out")
            }
            _ => {}
        }
    }

    fn connect(&mut self, registry: &Registry, now: Instant) {
        self.state = State::Connecting { since: now };
        // A new name for each link: entries written under the old one (members who left while
        // Redis was away) die with it, and `reclaim_everything` writes the live ones again.
        let old_pid = std::mem::replace(&mut self.pid, new_epoch().to_string());
        self.capability_known = false;
        let started =
            self.cmd.connect(self.addr, registry).and_then(|()| self.sub.connect(self.addr, registry));
        if let Err(e) = started {
            return self.fail(registry, now, &format!("cannot connect: {e}"));
        }
        let mut setup = Vec::new();
        if let Some((user, password)) = &self.url.auth {
            let mut auth = vec!["AUTH"];
            auth.extend(user.as_deref());
            auth.push(password);
            // The subscription link's answer is a plain OK, which `on_push` lets pass.
            setup.push(self.sub.queue(&auth));
            setup.push(self.cmd.queue(&auth));
            self.pending.push_back(Expect::Nothing);
        }
        // Keys live in the URL's database; channels are global, and name the database.
        setup.push(self.cmd.queue(&["SELECT", &self.url.db.to_string()]));
        self.pending.push_back(Expect::Nothing);
        setup.push(self.cmd.queue(&["ZREM", presence::PROCS, &old_pid]));
        self.pending.push_back(Expect::Nothing);
        let scripts = &self.scripts;
        for script in
            [&scripts.say, &scripts.load, &scripts.heartbeat, &scripts.claim, &scripts.live, &scripts.direct]
        {
            setup.push(self.cmd.queue(&["SCRIPT", "LOAD", &script.text]));
            self.pending.push_back(Expect::Nothing);
        }
        // Alive before anything is claimed in this process's name.
        setup.push(self.queue_heartbeat());
        self.pending.push_back(Expect::Nothing);
        self.next_heartbeat = now + self.presence_ttl / 3;
        setup.push(self.cmd.queue(&["HGETALL", presence::BANS]));
        self.pending.push_back(Expect::Bans);
        setup.push(self.cmd.queue(&["COMMAND", "INFO", "SPUBLISH"]));
        self.pending.push_back(Expect::Capability);
        // This process's own channel (private messages, kicks) and the bans, for as long as
        // the link lasts.
        let (own, bans) =
            (presence::process_channel(self.url.db, &self.pid), presence::bans_channel(self.url.db));
        setup.push(self.sub.queue(&["SUBSCRIBE", &own, &bans]));
        if let Some(Err(e)) = setup.into_iter().find(Result::is_err) {
            self.fail(registry, now, &e.to_string());
        }
    }

    /// Both links are dropped; the chat hears it if they were up; a retry is scheduled.
    fn fail(&mut self, registry: &Registry, now: Instant, why: &str) {
        let was_up = self.state == State::Up;
        if !self.warned {
            warn!("Redis at {}: {why}; chat goes on on this server alone, reconnecting", self.url);
            self.warned = true;
        } else {
            debug!("Redis at {}: {why}", self.url);
        }
        self.cmd.close(registry);
        self.sub.close(registry);
        if was_up {
            self.notices.push(Notice::Down);
        }
        // Messages Redis never answered: the chat delivers them on this process, rather than
        // lose them (Redis may have published some before it failed; see `Notice::Unsent`).
        for expected in self.pending.drain(..) {
            if let (true, Expect::Said { room, body }) = (was_up, expected) {
                self.notices.push(Notice::Unsent { room, body });
            }
        }
        self.reply_wait = None;
        self.followed.clear();
        self.unfollowed.clear();
        self.state = State::Down { retry_at: now + self.backoff };
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn channel(&self, room: &str) -> String {
        room::channel(self.url.db, room)
    }

    fn queue_heartbeat(&mut self) -> io::Result<()> {
        let (pid, ttl) = (self.pid.clone(), self.presence_ttl.as_millis().to_string());
        self.eval(|s| &s.heartbeat, &[presence::PROCS], &[&pid, &ttl])
    }

    /// Queues EVALSHA of one of the scripts (loaded on connect) with these keys and arguments.
    fn eval(&mut self, script: fn(&Scripts) -> &Script, keys: &[&str], args: &[&str]) -> io::Result<()> {
        let count = keys.len().to_string();
        let mut command = vec!["EVALSHA", &script(&self.scripts).sha, &count];
        command.extend(keys);
        command.extend(args);
        self.cmd.queue(&command)
    }

    /// Publishes a payload that is not kept (an announcement, a binary message) on a room's
    /// channel.
    fn publish(&mut self, room: &str, payload: &[u8]) -> io::Result<()> {
        let publish = if self.sharded { "SPUBLISH" } else { "PUBLISH" };
        self.pending.push_back(Expect::Nothing);
        self.cmd.queue(&[publish.as_bytes(), self.channel(room).as_bytes(), payload])
    }

    fn holder(&self, client: ClientId) -> String {
        presence::holder(&self.pid, client)
    }

    /// Takes one request from the chat; it is written at the end of the turn. Requests made
    /// while Redis is down are dropped: the chat is then running alone and knows it.
    pub fn request(&mut self, request: Request, registry: &Registry, now: Instant) {
        log::trace!("cluster request: {request:?}");
        if self.state != State::Up {
            return;
        }
        if self.pending.len() >= MAX_AWAITED {
            // Redis answers, but slower than the chat asks: drop the link rather than grow.
            return self.fail(registry, now, &format!("over {MAX_AWAITED} commands awaiting replies"));
        }
        let queued = match request {
            Request::Follow { room, display } => {
                let entry = self
                    .followed
                    .entry(room)
                    .or_insert(Followed { display: display.clone(), subscription: Subscription::Wanted });
                entry.display = display;
                Ok(())
            }
            Request::Reload { room, display } => match self.followed.get(&room) {
                Some(f) if f.subscription == Subscription::Live => self.queue_load(room, display),
                // Loaded anyway once the subscription is confirmed.
                _ => Ok(()),
            },
            Request::Unfollow { room } => {
                self.followed.remove(&room);
                self.unfollowed.push(room);
                Ok(())
            }
            Request::Say { room, display, body } => {
                let (meta, log, channel) = (room::meta_key(&room), room::log_key(&room), self.channel(&room));
                let (epoch, limit, ttl) =
                    (new_epoch(), self.history.to_string(), room::ROOM_TTL_SECS.to_string());
                let sharded = if self.sharded { "1" } else { "0" };
                let args = [&*channel, &epoch, &display, &limit, &ttl, &body, sharded];
                let queued = self.eval(|s| &s.say, &[&meta, &log], &args);
                self.pending.push_back(Expect::Said { room, body });
                queued
            }
            Request::Announce { room, event } => self.publish(&room, &room::event_payload(&event)),
            Request::Binary { room, data } => self.publish(&room, &room::binary_payload(&data)),
            Request::Claim { client, nick, signed, serial } => {
                let (key, holder, value) = (
                    presence::nick_key(&fold(&nick)),
                    self.holder(client),
                    presence::nick_value(&nick, signed),
                );
                self.pending.push_back(Expect::Claimed { client, nick, serial });
                self.eval(|s| &s.claim, &[presence::PROCS, &key], &[&holder, &value])
            }
            Request::Release { client, nick } => {
                self.pending.push_back(Expect::Nothing);
                self.cmd.queue(&["HDEL", &presence::nick_key(&fold(&nick)), &self.holder(client)])
            }
            Request::Seat { client, room, nick } => {
                self.pending.push_back(Expect::Nothing);
                self.cmd.queue(&["HSET", &presence::who_key(&room), &self.holder(client), &nick])
            }
            Request::Unseat { client, room } => {
                self.pending.push_back(Expect::Nothing);
                self.cmd.queue(&["HDEL", &presence::who_key(&room), &self.holder(client)])
            }
            Request::Count { room, display, count } => {
                self.pending.push_back(Expect::Nothing);
                let field = format!("{} {room}", self.pid);
                match count {
                    0 => self.cmd.queue(&["HDEL", presence::COUNTS, &field]),
                    _ => self.cmd.queue(&["HSET", presence::COUNTS, &field, &format!("{count} {display}")]),
                }
            }
            Request::Who { asker, room } => {
                let key = presence::who_key(&room);
                self.pending.push_back(Expect::Who { asker, room });
                self.eval(|s| &s.live, &[presence::PROCS, &key], &[])
            }
            Request::Rooms { asker } => {
                self.pending.push_back(Expect::Rooms { asker });
                self.eval(|s| &s.live, &[presence::PROCS, presence::COUNTS], &[])
            }
            Request::Direct { asker, nick, direct } => {
                let key = presence::nick_key(&fold(&nick));
                let prefix = presence::process_channel(self.url.db, "");
                let (kind, body) = match &direct {
                    Direct::Private(event) => ("p", event.clone()),
                    Direct::Kick(reason) => ("k", reason.clone()),
                    // The JSON first: it has no raw newline, the moderator's reason may.
                    Direct::Ban { closing, ban } => ("b", format!("{ban}\n{closing}")),
                };
                // The nick leads the body: the receiving process checks its connection still holds it.
                let body = format!("{nick}\n{body}");
                self.pending.push_back(Expect::Reached { asker, nick, direct });
                self.eval(|s| &s.direct, &[presence::PROCS, &key], &[&prefix, kind, &body])
            }
            Request::Ban { key, ban } => {
                let json = presence::ban_json(&key, &ban);
                self.pending.extend([Expect::Nothing, Expect::Nothing]);
                let channel = presence::bans_channel(self.url.db);
                self.cmd
                    .queue(&["HSET", presence::BANS, &key.to_store(), &json])
                    .and_then(|()| self.cmd.queue(&["PUBLISH", &channel, &format!("ban {json}")]))
            }
            Request::Unban { key } => {
                self.pending.extend([Expect::Nothing, Expect::Nothing]);
                let channel = presence::bans_channel(self.url.db);
                self.cmd
                    .queue(&["HDEL", presence::BANS, &key.to_store()])
                    .and_then(|()| self.cmd.queue(&["PUBLISH", &channel, &presence::unban_payload(&key)]))
            }
        };
        if let Err(e) = queued {
            self.fail(registry, now, &e.to_string());
        }
    }

    fn queue_load(&mut self, room: Rc<str>, display: Rc<str>) -> io::Result<()> {
        let (meta, log) = (room::meta_key(&room), room::log_key(&room));
        let (epoch, ttl) = (new_epoch(), room::ROOM_TTL_SECS.to_string());
        self.pending.push_back(Expect::Loaded { room, display: display.clone() });
        let limit = self.history.to_string();
        self.eval(|s| &s.load, &[&meta, &log], &[&epoch, &display, &ttl, &limit])
    }

    /// End of turn: this turn's (un)subscriptions in one command each, then one write per link.
    pub fn flush(&mut self, registry: &Registry, now: Instant) {
        if !self.pending.is_empty() && self.reply_wait.is_none() {
            self.reply_wait = Some(now);
        }
        if let Err(e) = self.write(registry) {
            self.fail(registry, now, &e.to_string());
        }
    }

    fn write(&mut self, registry: &Registry) -> io::Result<()> {
        if self.state == State::Up {
            let (subscribe, unsubscribe) =
                if self.sharded { ("SSUBSCRIBE", "SUNSUBSCRIBE") } else { ("SUBSCRIBE", "UNSUBSCRIBE") };
            let mut gone: Vec<String> = Vec::new();
            for room in std::mem::take(&mut self.unfollowed) {
                if !self.followed.contains_key(&room) {
                    gone.push(self.channel(&room));
                }
            }
            if !gone.is_empty() {
                let mut command = vec![unsubscribe.to_string()];
                command.append(&mut gone);
                self.sub.queue(&command)?;
            }
            let mut wanted = vec![subscribe.to_string()];
            let db = self.url.db;
            for (room, followed) in &mut self.followed {
                if followed.subscription == Subscription::Wanted {
                    followed.subscription = Subscription::Sent;
                    wanted.push(room::channel(db, room));
                }
            }
            if wanted.len() > 1 {
                self.sub.queue(&wanted)?;
            }
        }
        self.cmd.flush(registry)?;
        self.sub.flush(registry)
    }

    /// A readiness event on one of the links.
    pub fn on_event(
        &mut self,
        registry: &Registry,
        token: Token,
        readable: bool,
        writable: bool,
        now: Instant,
    ) {
        let awaited = self.pending.len();
        if let Err(e) = self.handle_event(registry, token, readable, writable) {
            return self.fail(registry, now, &e.to_string());
        }
        if self.pending.is_empty() {
            self.reply_wait = None;
        } else if self.pending.len() < awaited {
            self.reply_wait = Some(now);
        }
    }

    /// Reads the links whose reads were cut short last turn.
    pub fn read_unfinished(&mut self, registry: &Registry, now: Instant) {
        for token in [self.cmd.token(), self.sub.token()] {
            let link = if token == self.cmd.token() { &self.cmd } else { &self.sub };
            if link.has_unfinished_read() {
                self.on_event(registry, token, true, false, now);
            }
        }
    }

    fn handle_event(
        &mut self,
        registry: &Registry,
        token: Token,
        readable: bool,
        writable: bool,
    ) -> io::Result<()> {
        let is_cmd = token == self.cmd.token();
        let link = if is_cmd { &mut self.cmd } else { &mut self.sub };
        if !link.is_open() {
            return Ok(());
        }
        if writable {
            link.on_writable()?;
            // A finished connect sends what was queued; a blocked write resumes.
            link.flush(registry)?;
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

    /// Both links connected and the capability known: the cluster is reachable.
    fn maybe_up(&mut self) {
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
            self.notices.push(Notice::Up);
        }
    }

    /// A reply on the command link, matched with the command it answers.
    fn on_reply(&mut self, frame: Frame) -> io::Result<()> {
        let expected =
            self.pending.pop_front().ok_or_else(|| io::Error::other("a reply nobody asked for"))?;
        if let Some(e) = resp::error(&frame) {
            return Err(io::Error::other(format!("Redis refused a command ({expected:?}): {e}")));
        }
        match expected {
            Expect::Nothing | Expect::Said { .. } => {}
            Expect::Heartbeat => {
                if resp::integer(&frame) == Some(0) {
                    warn!(
                        "Redis at {}: this process's presence expired before its heartbeat (over {:?} late); \
                         writing its members' presence again",
                        self.url, self.presence_ttl
                    );
                    self.notices.push(Notice::Reclaim);
                }
            }
            Expect::Capability => {
                // An unknown command's entry is a null.
                self.sharded = matches!(&frame, Frame::Array(entries) if entries.first().is_some_and(|e| *e != Frame::Null));
                self.capability_known = true;
            }
            Expect::Loaded { room, display } => {
                if !self.followed.contains_key(&room) {
                    return Ok(()); // unfollowed meanwhile
                }
                let loaded = parse_loaded(room, display, &frame)
                    .ok_or_else(|| io::Error::other("a history load answered with something else"))?;
                self.notices.push(loaded);
            }
            Expect::Claimed { client, nick, serial } => {
                let held_by = match &frame {
                    Frame::Integer(1) => None,
                    other => Some(resp::text(other).unwrap_or("G ?").to_string()),
                };
                self.notices.push(Notice::Claimed { client, nick, held_by, serial });
            }
            Expect::Who { asker, room } => {
                let nicks = pairs(&frame).map(|(_, nick)| Rc::from(nick)).collect();
                self.notices.push(Notice::Who { asker, room, nicks });
            }
            Expect::Rooms { asker } => {
                // PID ROOM -> COUNT DISPLAY, summed over processes.
                let mut rooms: HashMap<Rc<str>, (Rc<str>, usize)> = HashMap::new();
                for (field, value) in pairs(&frame) {
                    let (Some((_, key)), Some((count, display))) =
                        (field.split_once(' '), value.split_once(' '))
                    else {
                        continue;
                    };
                    let entry = rooms.entry(Rc::from(key)).or_insert_with(|| (Rc::from(display), 0));
                    entry.1 = entry.1.saturating_add(count.parse::<usize>().unwrap_or(0));
                }
                let rooms = rooms.into_iter().map(|(key, (display, count))| (key, display, count)).collect();
                self.notices.push(Notice::Rooms { asker, rooms });
            }
            Expect::Reached { asker, nick, direct } => {
                let Frame::Array(parts) = &frame else {
                    return Err(io::Error::other("a direct message answered with something else"));
                };
                let reached = parts.first().and_then(resp::integer).unwrap_or(0) as usize;
                let held_as = parts.get(1).and_then(resp::text).and_then(|value| {
                    let nick = value.get(2..).filter(|n| !n.is_empty())?;
                    Some((Rc::from(nick), value.starts_with('S')))
                });
                self.notices.push(Notice::Reached { asker, nick, reached, held_as, direct });
            }
            Expect::Bans => {
                for (_, json) in pairs(&frame) {
                    if let Some((key, ban)) = presence::parse_ban(json.as_bytes()) {
                        self.notices.push(Notice::Banned { key, ban });
                    }
                }
            }
        }
        Ok(())
    }

    /// A message on this process's own channel or the bans channel.
    fn on_process_message(&mut self, channel: &[u8], payload: &[u8]) -> bool {
        let db = self.url.db;
        if channel == presence::bans_channel(db).as_bytes() {
            if let Some(json) = payload.strip_prefix(b"ban ") {
                if let Some((key, ban)) = presence::parse_ban(json) {
                    self.notices.push(Notice::Banned { key, ban });
                }
            } else if let Some(key) = presence::parse_unban(payload) {
                self.notices.push(Notice::Unbanned { key });
            }
            return true;
        }
        if channel != presence::process_channel(db, &self.pid).as_bytes() {
            return false;
        }
        // KIND CLIENT NICK\nBODY
        let mut parts = payload.splitn(3, |&b| b == b' ');
        let (Some(kind), Some(client), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return true;
        };
        let client = std::str::from_utf8(client).ok().and_then(|c| c.parse().ok());
        let rest = String::from_utf8_lossy(rest);
        let Some((nick, body)) = rest.split_once('\n') else { return true };
        let (nick, body) = (Rc::from(nick), body.to_string());
        let direct = match kind {
            b"p" => Direct::Private(body),
            b"k" => Direct::Kick(body),
            b"b" => match body.split_once('\n') {
                Some((ban, closing)) => Direct::Ban { closing: closing.to_string(), ban: ban.to_string() },
                None => return true,
            },
            _ => return true,
        };
        if let Some(client) = client {
            self.notices.push(Notice::Direct { client, nick, direct });
        }
        true
    }

    /// A push on the subscription link: a confirmation or a published message.
    fn on_push(&mut self, frame: Frame) -> io::Result<()> {
        let parts = match &frame {
            Frame::Array(parts) => parts,
            // AUTH's answer.
            Frame::SimpleString(_) => return Ok(()),
            Frame::Error(e) => {
                return Err(io::Error::other(format!("Redis refused a subscription command: {e}")))
            }
            _ => return Err(io::Error::other("the subscription link sent something other than a push")),
        };
        let kind = parts.first().and_then(resp::text).unwrap_or("");
        if let (Some(channel), Some(payload)) =
            (parts.get(1).and_then(resp::bytes), parts.get(2).and_then(resp::bytes))
        {
            if kind == "message" && self.on_process_message(&channel.clone(), &payload.clone()) {
                return Ok(());
            }
        }
        let Some(room) =
            parts.get(1).and_then(resp::bytes).and_then(|c| room::room_of_channel(self.url.db, c))
        else {
            return Ok(());
        };
        match kind {
            "ssubscribe" | "subscribe" => {
                debug!("Redis: subscribed to room {room:?}");
                let Some(followed) = self.followed.get_mut(room) else { return Ok(()) };
                if followed.subscription == Subscription::Sent {
                    followed.subscription = Subscription::Live;
                    let (room, display) = (Rc::from(room), followed.display.clone());
                    // Subscribed first, loaded second: a message published in between is in
                    // both, and the chat drops the copy by its sequence number.
                    self.queue_load(room, display)?;
                }
            }
            "smessage" | "message" => {
                let Some(followed) = self.followed.get(room) else { return Ok(()) };
                if followed.subscription != Subscription::Live {
                    return Ok(());
                }
                let payload = parts.get(2).and_then(resp::bytes);
                match payload.and_then(|p| room::parse_payload(room, followed.display.clone(), p)) {
                    Some(notice) => self.notices.push(notice),
                    None => warn!("Redis: an unreadable payload on the channel of room {room:?} was ignored"),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A flat array of field, value (HGETALL, the live-entries script) as pairs of text.
fn pairs(frame: &Frame) -> impl Iterator<Item = (&str, &str)> {
    let items: &[Frame] = match frame {
        Frame::Array(items) => items,
        _ => &[],
    };
    items.chunks_exact(2).filter_map(|pair| Some((resp::text(&pair[0])?, resp::text(&pair[1])?)))
}

/// `{epoch, seq, display, [[id, [field, value]], ...]}` from the load script, the entries newest
/// first; the messages come back oldest first.
fn parse_loaded(room: Rc<str>, display: Rc<str>, frame: &Frame) -> Option<Notice> {
    let Frame::Array(parts) = frame else { return None };
    let epoch = Rc::from(resp::text(parts.first()?)?);
    let top = resp::integer(parts.get(1)?)? as u64;
    let display = parts.get(2).and_then(resp::text).map_or(display, Rc::from);
    let Frame::Array(entries) = parts.get(3)? else { return None };
    let mut messages = Vec::with_capacity(entries.len());
    for entry in entries {
        let Frame::Array(entry) = entry else { return None };
        let seq = resp::text(entry.first()?)?.split('-').next()?.parse().ok()?;
        let Frame::Array(fields) = entry.get(1)? else { return None };
        messages.push(room::stored(seq, resp::bytes(fields.get(1)?)?)?);
    }
    messages.reverse();
    Some(Notice::Loaded { room, display, epoch, top, messages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_the_way_people_write_them() {
        let url = |text: &str| RedisUrl::parse(text);
        let plain = url("redis://127.0.0.1:6379").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.db, plain.auth.clone()),
            ("127.0.0.1", 6379, 0, None)
        );
        assert_eq!(url("redis://redis").unwrap().port, 6379);
        assert_eq!(url("redis://redis:7000/3").unwrap().db, 3);
        assert_eq!(url("redis://[::1]:7000").unwrap().host, "::1");
        let auth = url("redis://:s3cret@h:1/2").unwrap();
        assert_eq!(auth.auth, Some((None, "s3cret".to_string())));
        assert_eq!(auth.to_string(), "redis://h:1/2", "no password when shown");
        assert_eq!(url("redis://me:pw@h").unwrap().auth, Some((Some("me".into()), "pw".into())));
        for bad in ["http://h", "redis://", "redis://h:port", "redis://h/db"] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_loaded_history_is_read_back() {
        let bulk = |s: &str| Frame::BulkString(bytes::Bytes::copy_from_slice(s.as_bytes()));
        let entry = |seq: u64, from: &str| {
            Frame::Array(vec![
                bulk(&format!("{seq}-1")),
                Frame::Array(vec![bulk("m"), bulk(&room::say_body(from, "hi", 5, false))]),
            ])
        };
        let frame = Frame::Array(vec![
            bulk("ep0ch"),
            bulk("9"),
            bulk("Lobby"),
            // Newest first, as XREVRANGE gives them.
            Frame::Array(vec![entry(9, "b"), entry(8, "a")]),
        ]);
        let Some(Notice::Loaded { epoch, top, display, messages, .. }) =
            parse_loaded(Rc::from("lobby"), Rc::from("lobby"), &frame)
        else {
            panic!()
        };
        assert_eq!((&*epoch, top, &*display), ("ep0ch", 9, "Lobby"));
        assert_eq!(messages.iter().map(|m| (m.seq, &*m.from)).collect::<Vec<_>>(), [(8, "a"), (9, "b")]);
    }
}
