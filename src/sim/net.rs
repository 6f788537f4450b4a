//! The simulated Redis server and the network between it and the processes: the
//! [`Keyspace`] of `redis.rs` behind connections whose every message takes a seeded random
//! time to cross, on one virtual clock.
//!
//! Each process's broker makes two connections, as it does to a real Redis (through
//! `wire.rs`): a *command* link (commands arrive in the order sent; replies come back in that
//! order) and a *subscription* link (SUBSCRIBE and UNSUBSCRIBE arrive in the order sent; pushes
//! come back in order *per channel*, confirmations included, but channels may overtake each
//! other: a weaker promise than one Redis connection gives, so the chat is tested against less
//! than it gets). The two links are not ordered against each other, nor are different
//! processes' connections: Redis runs whatever has arrived in the order it arrived
//! ([`SimRedis::run_until`]). A connect takes a crossing too, and each connection's readiness
//! is edge-triggered, as the poll's is ([`SimRedis::readiness`]).
//!
//! What can go wrong, on demand:
//! - a process's link is *cut* ([`SimRedis::cut`]): with a reset (the broker sees the
//!   connection close) or silently (everything just vanishes; the broker finds out when a
//!   reply is overdue); whatever was on the wire is lost, whatever reached Redis was done;
//!   until [`SimRedis::heal`], connecting is refused;
//! - a process's link *stalls* ([`SimRedis::stall`]): everything to and from it takes that
//!   much longer, but still arrives, in order (a Redis busy with a slow command, a congested
//!   network); the broker may give up on it first and say its messages again alone;
//! - Redis *stops* ([`SimRedis::stop`]), keeping its data or losing it, until
//!   [`SimRedis::start`]: every connection is reset.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::redis::{Keyspace, Op, Reply};
use crate::rng::Rng;

/// One connection, by the number Redis gave it.
pub type ConnId = u64;

/// The simulated Redis, shared by every simulated process's broker.
pub type SharedRedis = Rc<RefCell<SimRedis>>;

/// What a process sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// On the command link.
    Command(Op),
    /// On the subscription link.
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
}

/// What reaches a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// On the command link: the reply to the oldest command not yet answered.
    Reply(Reply),
    /// On the subscription link.
    Subscribed(String),
    Unsubscribed(String),
    Message(String, Bytes),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Open,
    /// Closed by the other end: the process's next read says so.
    Reset,
    /// Black-holed: nothing crosses any more, and nobody is told.
    Silent,
}

/// A link's messages on the wire: (arrival, order sent, message).
type Wire<T> = VecDeque<(Instant, u64, T)>;

struct Conn {
    process: usize,
    health: Health,
    commands: Wire<Sent>,
    subscription: Wire<Sent>,
    /// Towards the process; kept in arrival order.
    inbound: Vec<(Instant, u64, Arrival)>,
    /// When the last reply arrives (replies keep their order).
    last_reply: Instant,
    /// When the last push of each channel arrives (a channel keeps its order).
    last_push: HashMap<String, Instant>,
    subscribed: BTreeSet<String>,
    /// When the connect completes (its first WRITABLE).
    connected_at: Instant,
    /// What the process has been told: that the connect completed, that the connection was
    /// reset, and how many arrivals it knows are waiting.
    told_connected: bool,
    told_reset: bool,
    told_due: usize,
}

impl Conn {
    fn clear(&mut self) {
        self.commands.clear();
        self.subscription.clear();
        self.inbound.clear();
        self.told_due = 0;
    }
}

/// Redis and the wires to it.
pub struct SimRedis {
    keys: Keyspace,
    running: bool,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    /// Order of sending, across everything: ties in arrival go to what was sent first.
    next_order: u64,
    rng: Rng,
    /// Longest a message takes to cross, one way.
    latency: Duration,
    /// Redis's clock reads milliseconds since this.
    start: Instant,
    /// Processes that cannot reach Redis.
    cut: BTreeSet<usize>,
    /// Processes whose messages take this much longer each way.
    stalled: BTreeMap<usize, Duration>,
    /// The virtual time of the last [`Self::run_until`]: what the processes' sockets go by.
    now: Instant,
}

impl SimRedis {
    /// A running Redis with no data, messages taking up to `latency` each way.
    pub fn new(seed: u64, latency: Duration, start: Instant) -> Self {
        Self {
            keys: Keyspace::default(),
            running: true,
            conns: BTreeMap::new(),
            next_conn: 0,
            next_order: 0,
            rng: Rng::seeded(seed),
            latency,
            start,
            cut: BTreeSet::new(),
            stalled: BTreeMap::new(),
            now: start,
        }
    }

    /// The virtual time of the last [`Self::run_until`].
    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn shared(self) -> SharedRedis {
        Rc::new(RefCell::new(self))
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.keys
    }

    /// Redis's clock at `at`, in milliseconds.
    pub fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_millis() as u64
    }

    /// Nothing is wrong at `now`: Redis runs, and every process's link works (see
    /// [`Self::works_for`]).
    pub fn is_healthy(&self, now: Instant) -> bool {
        self.running && self.cut.is_empty() && self.conns.values().all(|c| self.works(c, now))
    }

    /// Whether `process` could connect now and its connections all work: none was reset or
    /// black-holed without it knowing yet, and none is stalled or still carries what a stall
    /// slowed down (a reply that late may yet make its broker give up on the link).
    pub fn works_for(&self, process: usize, now: Instant) -> bool {
        self.reachable(process)
            && self.conns.values().filter(|c| c.process == process).all(|c| self.works(c, now))
    }

    fn works(&self, conn: &Conn, now: Instant) -> bool {
        let due = now + self.latency;
        let on_time = |wire: &Wire<Sent>| wire.back().is_none_or(|(at, _, _)| *at <= due);
        conn.health == Health::Open
            && !self.stalled.contains_key(&conn.process)
            && on_time(&conn.commands)
            && on_time(&conn.subscription)
            && conn.last_reply <= due
            && conn.last_push.values().all(|at| *at <= due)
    }

    /// Whether `process` could connect now.
    pub fn reachable(&self, process: usize) -> bool {
        self.running && !self.cut.contains(&process)
    }

    /// A new connection for `process`; refused (reset at once) if it cannot reach Redis.
    pub fn connect(&mut self, process: usize, now: Instant) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        let health = if self.reachable(process) { Health::Open } else { Health::Reset };
        let connected_at = now + self.delay();
        let conn = Conn {
            process,
            health,
            commands: VecDeque::new(),
            subscription: VecDeque::new(),
            inbound: Vec::new(),
            last_reply: now,
            last_push: HashMap::new(),
            subscribed: BTreeSet::new(),
            connected_at,
            told_connected: false,
            told_reset: false,
            told_due: 0,
        };
        self.conns.insert(id, conn);
        id
    }

    /// Whether the connect completed by `now`: an error if it was refused, or the connection
    /// reset since.
    pub fn is_connected(&self, conn: ConnId, now: Instant) -> std::io::Result<bool> {
        match self.conns.get(&conn) {
            Some(c) if c.health != Health::Reset => Ok(now >= c.connected_at),
            _ => Err(std::io::ErrorKind::ConnectionReset.into()),
        }
    }

    /// What the process's poll reports for `conn` at `now` (readable, writable), edge-triggered:
    /// each thing once, when it happens (the connect completing, the connection reset, new
    /// arrivals), never again for what was reported and not yet read.
    pub fn readiness(&mut self, conn: ConnId, now: Instant) -> (bool, bool) {
        let Some(c) = self.conns.get_mut(&conn) else { return (false, false) };
        let mut ready = (false, false);
        if !c.told_connected && (now >= c.connected_at || c.health == Health::Reset) {
            c.told_connected = true;
            ready = (c.health == Health::Reset, true);
        }
        if c.health == Health::Reset && !c.told_reset {
            c.told_reset = true;
            ready.0 = true;
        }
        let due = c.inbound.partition_point(|(at, _, _)| *at <= now);
        if due > c.told_due {
            c.told_due = due;
            ready.0 = true;
        }
        ready
    }

    /// The process dropped its connection.
    pub fn close(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// Puts a message on the wire towards Redis; it arrives after the ones sent before it on
    /// the same link.
    pub fn send(&mut self, conn: ConnId, sent: Sent, now: Instant) {
        let delay = self.delay() + self.conns.get(&conn).map_or(Duration::ZERO, |c| self.stall_of(c.process));
        let order = self.order();
        let Some(conn) = self.conns.get_mut(&conn).filter(|c| c.health == Health::Open) else { return };
        let wire = match sent {
            Sent::Command(_) => &mut conn.commands,
            Sent::Subscribe(_) | Sent::Unsubscribe(_) => &mut conn.subscription,
        };
        let at = wire.back().map_or(now + delay, |(last, _, _)| (*last).max(now + delay));
        wire.push_back((at, order, sent));
    }

    /// What has reached the process on `conn` by `now`, in arrival order; None if the
    /// connection was closed by the other end.
    pub fn receive(&mut self, conn: ConnId, now: Instant) -> Option<Vec<Arrival>> {
        let conn = self.conns.get_mut(&conn).filter(|c| c.health != Health::Reset)?;
        let arrived = conn.inbound.partition_point(|(at, _, _)| *at <= now);
        conn.told_due = conn.told_due.saturating_sub(arrived);
        Some(conn.inbound.drain(..arrived).map(|(_, _, arrival)| arrival).collect())
    }

    /// Runs, in order of arrival, every command that has reached Redis by `now`.
    pub fn run_until(&mut self, now: Instant) {
        self.now = self.now.max(now);
        while let Some((id, subscription)) = self.next_due(now) {
            let Some(conn) = self.conns.get_mut(&id) else { return };
            let wire = if subscription { &mut conn.subscription } else { &mut conn.commands };
            let Some((at, _, sent)) = wire.pop_front() else { return };
            self.execute(id, sent, at);
        }
    }

    /// The connection and link whose next message reaches Redis first, if one has by `now`.
    fn next_due(&self, now: Instant) -> Option<(ConnId, bool)> {
        let fronts = self.conns.iter().flat_map(|(id, conn)| {
            let commands = conn.commands.front().map(|(at, order, _)| (*at, *order, *id, false));
            let subscription = conn.subscription.front().map(|(at, order, _)| (*at, *order, *id, true));
            commands.into_iter().chain(subscription)
        });
        let (at, _, id, subscription) = fronts.min()?;
        (at <= now).then_some((id, subscription))
    }

    fn execute(&mut self, id: ConnId, sent: Sent, at: Instant) {
        if !self.running {
            return;
        }
        match sent {
            Sent::Command(op) => {
                let (reply, published) = self.keys.run(op, self.ms(at));
                let delay = self.delay();
                self.deliver(id, None, Arrival::Reply(reply), at + delay);
                for (channel, payload) in published {
                    self.publish(&channel, &payload, at);
                }
            }
            Sent::Subscribe(channels) => {
                for channel in channels {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.subscribed.insert(channel.clone());
                    }
                    let delay = self.delay();
                    self.deliver(id, Some(&channel), Arrival::Subscribed(channel.clone()), at + delay);
                }
            }
            Sent::Unsubscribe(channels) => {
                for channel in channels {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.subscribed.remove(&channel);
                    }
                    let delay = self.delay();
                    self.deliver(id, Some(&channel), Arrival::Unsubscribed(channel.clone()), at + delay);
                }
            }
        }
    }

    /// Sends `payload` to every connection subscribed to `channel`.
    fn publish(&mut self, channel: &str, payload: &Bytes, at: Instant) {
        let subscribers: Vec<ConnId> =
            self.conns.iter().filter(|(_, c)| c.subscribed.contains(channel)).map(|(id, _)| *id).collect();
        for id in subscribers {
            let delay = self.delay();
            let message = Arrival::Message(channel.to_string(), payload.clone());
            self.deliver(id, Some(channel), message, at + delay);
        }
    }

    /// Puts a reply (`channel` None) or a push on the wire towards a process, behind what it
    /// must not overtake.
    fn deliver(&mut self, id: ConnId, channel: Option<&str>, arrival: Arrival, earliest: Instant) {
        let order = self.order();
        let earliest = earliest + self.conns.get(&id).map_or(Duration::ZERO, |c| self.stall_of(c.process));
        let Some(conn) = self.conns.get_mut(&id).filter(|c| c.health == Health::Open) else { return };
        let last = match channel {
            None => &mut conn.last_reply,
            Some(channel) => conn.last_push.entry(channel.to_string()).or_insert(earliest),
        };
        let at = earliest.max(*last);
        *last = at;
        let slot = conn.inbound.partition_point(|(t, o, _)| (*t, *o) <= (at, order));
        conn.inbound.insert(slot, (at, order, arrival));
    }

    /// Cuts `process` off Redis until [`Self::heal`]: its connections reset (`silent` false)
    /// or black-holed (`silent` true), what was on their wires lost.
    pub fn cut(&mut self, process: usize, silent: bool) {
        self.cut.insert(process);
        for conn in self.conns.values_mut().filter(|c| c.process == process) {
            conn.health = if silent { Health::Silent } else { Health::Reset };
            conn.clear();
        }
    }

    /// Until [`Self::heal`], everything sent to or from `process` takes `by` longer.
    pub fn stall(&mut self, process: usize, by: Duration) {
        self.stalled.insert(process, by);
    }

    /// `process` reaches Redis again, at the usual speed (a link it holds that was cut stays
    /// dead: its broker must notice and connect again).
    pub fn heal(&mut self, process: usize) {
        self.cut.remove(&process);
        self.stalled.remove(&process);
    }

    pub fn is_stalled(&self, process: usize) -> bool {
        self.stalled.contains_key(&process)
    }

    fn stall_of(&self, process: usize) -> Duration {
        self.stalled.get(&process).copied().unwrap_or_default()
    }

    /// Redis stops: every connection is reset, and with `keep_data` false the keyspace is
    /// gone (rooms start new epochs, guest numbers start again, nobody holds a nick).
    pub fn stop(&mut self, keep_data: bool) {
        self.running = false;
        for conn in self.conns.values_mut() {
            conn.health = Health::Reset;
            conn.clear();
            conn.subscribed.clear();
        }
        if !keep_data {
            self.keys = Keyspace::default();
        }
    }

    pub fn start(&mut self) {
        self.running = true;
    }

    /// When the next message on any wire arrives.
    pub fn next_arrival(&self) -> Option<Instant> {
        let fronts = self.conns.values().flat_map(|c| {
            [c.commands.front(), c.subscription.front()]
                .into_iter()
                .flatten()
                .map(|(at, _, _)| *at)
                .chain(c.inbound.first().map(|(at, _, _)| *at))
                .chain((!c.told_connected).then_some(c.connected_at))
        });
        fronts.min()
    }

    /// Nothing is on any wire but a stalled process's (which may never be idle: a link slower
    /// than the broker's patience is made and dropped again and again).
    pub fn is_idle(&self) -> bool {
        self.conns.values().filter(|c| !self.stalled.contains_key(&c.process)).all(|c| {
            c.commands.is_empty()
                && c.subscription.is_empty()
                && c.inbound.is_empty()
                && c.told_connected
                && (c.health != Health::Reset || c.told_reset)
        })
    }

    fn delay(&mut self) -> Duration {
        let micros = self.latency.as_micros() as u64;
        Duration::from_micros(self.rng.below(micros + 1))
    }

    fn order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(channel: &str, text: &'static str) -> Sent {
        Sent::Command(Op::Publish { channel: channel.into(), payload: Bytes::from(text) })
    }

    #[test]
    fn a_channel_keeps_its_order_and_replies_theirs() {
        let start = Instant::now();
        let mut redis = SimRedis::new(7, Duration::from_millis(10), start);
        let (a, b) = (redis.connect(0, start), redis.connect(1, start));
        redis.send(b, Sent::Subscribe(vec!["x".into(), "y".into()]), start);
        redis.run_until(start + Duration::from_millis(20));
        for text in ["1", "2", "3"] {
            redis.send(a, publish("x", text), start + Duration::from_millis(20));
        }
        let end = start + Duration::from_millis(100);
        redis.run_until(end);
        assert!(redis.is_idle() || redis.next_arrival() <= Some(end));
        let got = redis.receive(b, end).unwrap();
        let on_x: Vec<Arrival> =
            got.into_iter().filter(|a| !matches!(a, Arrival::Subscribed(c) if c == "y")).collect();
        let message = |t: &'static str| Arrival::Message("x".into(), Bytes::from(t));
        assert_eq!(on_x, [Arrival::Subscribed("x".into()), message("1"), message("2"), message("3")]);
        let replies = redis.receive(a, end).unwrap();
        assert_eq!(replies, vec![Arrival::Reply(Reply::Integer(0)); 3]);
    }

    #[test]
    fn a_cut_process_is_reset_and_refused_until_healed() {
        let start = Instant::now();
        let mut redis = SimRedis::new(1, Duration::from_millis(1), start);
        let conn = redis.connect(0, start);
        redis.send(conn, Sent::Command(Op::Incr), start);
        redis.cut(0, false);
        redis.run_until(start + Duration::from_secs(1));
        assert_eq!(redis.receive(conn, start + Duration::from_secs(1)), None);
        assert_eq!(redis.keyspace().room_numbering("x"), None);
        let refused = redis.connect(0, start);
        assert_eq!(redis.receive(refused, start), None);
        redis.heal(0);
        let conn = redis.connect(0, start);
        redis.send(conn, Sent::Command(Op::Incr), start);
        redis.run_until(start + Duration::from_secs(1));
        let reply = redis.receive(conn, start + Duration::from_secs(1)).unwrap();
        assert_eq!(reply, [Arrival::Reply(Reply::Integer(1))], "the lost INCR never ran");
    }
}
