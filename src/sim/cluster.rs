//! [`SimCluster`]: several server processes, each a [`Simulation`] (the real hub, chat and
//! connections) with the real Redis broker, linked by one simulated Redis (`net.rs`) through
//! simulated sockets (`wire.rs`), on one virtual clock, from one seed.
//!
//! A step is one turn of the whole cluster: Redis runs every command that has reached it, then
//! each process takes one turn of its loop (readiness, its broker's sockets' included, timers,
//! the exchange with its broker, flush). Time moves only when the cluster is told to wait: [`SimCluster::settle`] jumps from
//! one event to the next (a message arriving, a timer due) until nothing is on the way and no
//! input waits, so delays of any length cost no real time.
//!
//! Clients are attached to one process each and speak JSON mode (`wschat.json`), so what they
//! received reads back as events with ids: after every step the cluster reads each client's new
//! frames into its [`Seen`] (see `observe.rs`).

use std::cell::Ref;
use std::time::{Duration, Instant};

use mio::Token;

use super::net::{SharedRedis, SimRedis};
use super::observe::{Echoes, Observed, Seen};
use super::wire::{SimDialer, Sockets};
use super::{json_upgrade_request, ClientIx, Simulation};
use crate::cluster::{RedisBroker, RedisUrl};
use crate::config::Config;
use crate::settings::Settings;

/// Turns [`SimCluster::settle`] allows before it decides the cluster never settles.
const SETTLE_TURNS: usize = 200_000;
/// Virtual time [`SimCluster::settle`] allows: past it something waits for ever.
const SETTLE_TIME: Duration = Duration::from_secs(120);

/// A client of the cluster: the process it is attached to, and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    pub process: usize,
    pub ix: ClientIx,
}

/// The processes, the Redis between them, and the clock.
pub struct SimCluster {
    redis: SharedRedis,
    processes: Vec<Simulation>,
    /// Each process's open connections to Redis.
    sockets: Vec<Sockets>,
    /// Each process's clients' own announcements, as they came back.
    echoes: Vec<Echoes>,
    /// What each client saw, in the order they connected.
    seen: Vec<(Member, Seen)>,
    now: Instant,
}

impl SimCluster {
    /// Settings for a cluster's processes: no rate limit, timeouts far beyond any script (the
    /// simulated clients never answer pings), a short history so trimming happens.
    pub fn settings() -> Settings {
        let mut config = Config::with_addr("127.0.0.1:0".parse().expect("address"));
        config.max_messages_per_sec = 0;
        config.idle_timeout = Duration::from_secs(24 * 3600);
        config.history = 20;
        config.settings().expect("valid settings")
    }

    /// `processes` processes with `settings`, each message on the network taking up to
    /// `latency`; returns once every process is linked.
    pub fn new(settings: &Settings, processes: usize, seed: u64, latency: Duration) -> Self {
        let start = Instant::now();
        let redis = SimRedis::new(seed, latency, start).shared();
        let echoes: Vec<Echoes> = (0..processes).map(|_| Echoes::default()).collect();
        let sockets: Vec<Sockets> = (0..processes).map(|_| Sockets::default()).collect();
        let url = RedisUrl::parse("redis://sim:6379/0").expect("a Redis URL");
        let flags = (settings.chat.history, settings.max_message_size);
        let mut sims: Vec<Simulation> = (0..processes)
            .map(|process| {
                let dialer = SimDialer::new(redis.clone(), process, sockets[process].clone());
                let (ttl, tokens) = (settings.presence_ttl, (Token(0), Token(1)));
                let broker =
                    RedisBroker::with_dialer(url.clone(), flags, ttl, Box::new(dialer), tokens, start);
                let observed = Observed { broker: Box::new(broker), echoes: echoes[process].clone() };
                Simulation::with_broker(settings.clone(), Box::new(observed))
            })
            .collect();
        let now = sims.iter().map(Simulation::now).max().unwrap_or(start);
        sims.iter_mut().for_each(|sim| sim.set_now(now));
        let mut cluster = Self { redis, processes: sims, sockets, echoes, seen: Vec::new(), now };
        cluster.settle();
        cluster
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn process(&self, process: usize) -> &Simulation {
        &self.processes[process]
    }

    pub fn processes(&self) -> usize {
        self.processes.len()
    }

    pub fn redis(&self) -> Ref<'_, SimRedis> {
        self.redis.borrow()
    }

    /// Whether `process`'s broker says it is linked.
    pub fn is_linked(&self, process: usize) -> bool {
        self.processes[process].hub().broker().linked() == Some(true)
    }

    /// A JSON-mode client of `process` upgraded on `path` (e.g. `/?nick=ann&room=dev`): its
    /// process takes a turn to answer the handshake (a client may send nothing before the
    /// 101); its nick claim and join follow as the cluster steps.
    pub fn connect(&mut self, process: usize, path: &str) -> Member {
        let sim = &mut self.processes[process];
        let ix = sim.connect(&json_upgrade_request(path));
        // Its connection's id may have been another's: what came back for that one is not its.
        self.echoes[process].borrow_mut().remove(&sim.key(ix));
        sim.set_now(self.now);
        sim.step();
        assert_eq!(sim.status(ix), Some(101), "upgrade to {path} refused");
        let member = Member { process, ix };
        self.seen.push((member, Seen::default()));
        member
    }

    /// What the client saw so far.
    pub fn seen(&self, member: Member) -> &Seen {
        let found = self.seen.iter().find(|(m, _)| *m == member);
        &found.expect("a client of this cluster").1
    }

    pub fn send_text(&mut self, member: Member, text: &str) {
        self.processes[member.process].send_text(member.ix, text);
    }

    /// The client closes its side: its process reads EOF and it leaves the chat.
    pub fn hang_up(&mut self, member: Member) {
        self.processes[member.process].shut_down_input(member.ix);
    }

    pub fn is_connected(&self, member: Member) -> bool {
        self.processes[member.process].is_connected(member.ix)
    }

    /// The nick the client holds, as its process's chat has it.
    pub fn nick(&self, member: Member) -> Option<&str> {
        let sim = &self.processes[member.process];
        self.is_connected(member).then(|| sim.hub().chat().nick(sim.key(member.ix)))?
    }

    /// The text frames the client received.
    pub fn texts(&mut self, member: Member) -> Vec<String> {
        self.processes[member.process].texts(member.ix)
    }

    /// `process` loses Redis until [`Self::heal`]: its link reset (`silent` false) or
    /// black-holed (`silent` true).
    pub fn cut(&mut self, process: usize, silent: bool) {
        self.redis.borrow_mut().cut(process, silent);
    }

    /// Everything to and from `process` takes `by` longer, until [`Self::heal`].
    pub fn stall(&mut self, process: usize, by: Duration) {
        self.redis.borrow_mut().stall(process, by);
    }

    pub fn heal(&mut self, process: usize) {
        self.redis.borrow_mut().heal(process);
    }

    /// Redis stops, keeping its data or not, until [`Self::start_redis`].
    pub fn stop_redis(&mut self, keep_data: bool) {
        self.redis.borrow_mut().stop(keep_data);
    }

    pub fn start_redis(&mut self) {
        self.redis.borrow_mut().start();
    }

    /// One turn of the cluster at the current time: Redis, then each process.
    pub fn step(&mut self) {
        self.redis.borrow_mut().run_until(self.now);
        for (process, sim) in self.processes.iter_mut().enumerate() {
            sim.set_now(self.now);
            let mut redis = self.redis.borrow_mut();
            for &(token, conn) in self.sockets[process].borrow().iter() {
                let (readable, writable) = redis.readiness(conn, self.now);
                if readable || writable {
                    sim.broker_ready(token, readable, writable);
                }
            }
            drop(redis);
            sim.step();
        }
        self.observe();
    }

    /// Reads each client's new frames, with its own announcements that came back this step.
    fn observe(&mut self) {
        for (member, seen) in &mut self.seen {
            let sim = &mut self.processes[member.process];
            // A connection gone may have left its id to another: what comes back is not its.
            let echoes = match sim.is_connected(member.ix) {
                true => self.echoes[member.process].borrow_mut().remove(&sim.key(member.ix)),
                false => None,
            };
            seen.update(sim.frames(member.ix), echoes.unwrap_or_default());
        }
    }

    /// Nothing is on the way and nothing waits: no message on the network, no input unread,
    /// nothing due, and every process that can reach Redis linked to it. Of a stalled process
    /// only the first is asked: its link may never settle.
    pub fn is_quiet(&self) -> bool {
        let redis = self.redis.borrow();
        redis.is_idle()
            && self.processes.iter().enumerate().all(|(process, sim)| {
                sim.is_quiet()
                    && (redis.is_stalled(process)
                        || (sim.wake_at().is_none_or(|at| at > self.now)
                            && (self.is_linked(process) || !redis.reachable(process))))
            })
    }

    /// When something next happens without a client doing anything.
    fn next_event(&self) -> Option<Instant> {
        let processes = self.processes.iter().filter_map(Simulation::wake_at);
        self.redis.borrow().next_arrival().into_iter().chain(processes).min()
    }

    /// Steps, moving the clock from event to event, until the cluster is quiet; panics if it
    /// never is (something waits for ever).
    pub fn settle(&mut self) {
        let deadline = self.now + SETTLE_TIME;
        for _ in 0..SETTLE_TURNS {
            self.step();
            if self.is_quiet() {
                return;
            }
            if let Some(next) = self.next_event() {
                self.now = self.now.max(next);
            }
            assert!(
                self.now <= deadline,
                "the cluster did not settle within {SETTLE_TIME:?} of virtual time"
            );
        }
        panic!("the cluster did not settle within {SETTLE_TURNS} turns");
    }

    /// Lets `by` pass, stepping at every event on the way, then once at its end.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        for _ in 0..SETTLE_TURNS {
            match self.next_event() {
                Some(next) if next <= until => {
                    self.now = self.now.max(next);
                    self.step();
                }
                _ => break,
            }
        }
        self.now = until;
        self.step();
    }
}
