//! One bench thread: a [`Worker`] runs a mio poll loop that drives its share of the client
//! connections ([`Client`]s) through connect, handshake, traffic and, with `--churn`, clean
//! closes and reconnections, recording connect and delivery latencies. What it is asked to do
//! ([`Plan`]) and what it shares with the coordinating thread ([`Shared`]) are
//! [`super::shared`]'s.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Poll};

use super::client::{Client, Recorder, Stage, Tally, Tools, READ_BUFFER};
use super::payload::Inflating;
use super::shared::latency_histogram;
use super::wire;
use crate::rng::Rng;

// A worker's inputs, named beside it for those who drive a worker themselves
// (benches/broadcast.rs).
pub use super::shared::{Pace, Plan, Shared, Slot};

/// What one worker measured.
pub struct Outcome {
    pub connect: Histogram<u64>,
    pub latency: Histogram<u64>,
}

/// How long a churned connection may take to finish its close handshake.
const CLOSE_TIMEOUT_NS: u64 = 5_000_000_000;
/// How often connections due to churn are looked for.
const CHURN_TICK: Duration = Duration::from_millis(10);
/// How often this thread's latencies are merged into the shared progress histogram.
const MERGE_EVERY: Duration = Duration::from_millis(200);

/// Runs one worker thread's plan until told to stop.
pub fn run(plan: Plan, shared: Arc<Shared>) -> io::Result<Outcome> {
    Worker::new(plan, shared)?.run()
}

/// One thread's connections and its poll loop.
pub struct Worker {
    plan: Plan,
    shared: Arc<Shared>,
    poll: Poll,
    clients: Vec<Client>,
    /// Which of `clients` send: a few among thousands, so the per-turn sending pass and the
    /// next-send deadline look at these alone.
    senders: Vec<usize>,
    outcome: Outcome,
    /// Latencies since the last merge into `Shared::interval` and `outcome.latency`: each
    /// delivery is recorded once, here.
    interval: Histogram<u64>,
    /// Deliveries not yet added to `Shared`'s counters.
    tally: Tally,
    last_merge: Instant,
    last_churn: Instant,
    next_to_open: usize,
    /// Initial connections still handshaking.
    in_flight: usize,
    tools: Tools,
}

impl Worker {
    pub fn new(plan: Plan, shared: Arc<Shared>) -> io::Result<Self> {
        let seed = 0x2545_F491_4F6C_DD1D ^ plan.clients.len() as u64;
        let longest = plan.text.map_or(plan.size, |text| text.max);
        let scratch = Vec::with_capacity(longest.max(wire::TOKEN_LEN));
        Ok(Self {
            poll: Poll::new()?,
            clients: Vec::with_capacity(plan.clients.len()),
            senders: Vec::new(),
            outcome: Outcome { connect: latency_histogram(), latency: latency_histogram() },
            interval: latency_histogram(),
            last_merge: Instant::now(),
            last_churn: Instant::now(),
            next_to_open: 0,
            in_flight: 0,
            tally: Tally::default(),
            tools: Tools {
                rng: Rng::seeded(seed),
                scratch,
                rx: vec![0; READ_BUFFER],
                inflating: Inflating::new(!plan.inflate_every_frame),
            },
            plan,
            shared,
        })
    }

    /// The poll loop: open connections, handle readiness, churn, send, report progress.
    pub fn run(mut self) -> io::Result<Outcome> {
        let mut events = Events::with_capacity(1024);
        loop {
            self.open_more();
            let traffic_start = self.shared.traffic_start_ns.load(Ordering::Acquire);
            let sending = traffic_start != 0 && !self.shared.stop_sending.load(Ordering::Acquire);
            if self.shared.stop.load(Ordering::Acquire) {
                self.merge_latencies();
                return Ok(self.outcome);
            }
            let timeout = self.poll_timeout(sending, traffic_start);
            match self.poll.poll(&mut events, Some(timeout)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            }
            for event in events.iter() {
                let closed = event.is_read_closed() || event.is_error();
                let readable = event.is_readable() || closed;
                self.on_event(event.token().0, readable, closed, event.is_writable(), sending);
            }
            if sending {
                self.churn();
                self.send();
            }
            self.publish_tally();
            self.merge_progress();
        }
    }

    /// Opens more connections, keeping at most `connect_concurrency` handshakes in flight.
    fn open_more(&mut self) {
        let limit = self.shared.open_limit.load(Ordering::Acquire);
        while self.in_flight < self.plan.connect_concurrency
            && self.next_to_open < self.plan.clients.len()
            && self.plan.clients[self.next_to_open].index < limit
        {
            let index = self.clients.len();
            match Client::open(&self.plan, &self.poll, self.next_to_open, index, self.shared.now_ns()) {
                Ok(client) => {
                    if client.sender.is_some() {
                        self.senders.push(index);
                    }
                    self.clients.push(client);
                    self.in_flight += 1;
                }
                Err(e) => {
                    self.shared.note_failure(format!("cannot connect: {e}"));
                    self.shared.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.next_to_open += 1;
        }
    }

    /// How long to wait for readiness: until the next paced send or churn check, briefly
    /// while waiting for traffic to start.
    fn poll_timeout(&self, sending: bool, traffic_start: u64) -> Duration {
        let now_ns = self.shared.now_ns();
        match self.plan.pace {
            _ if sending && self.plan.churn.is_some() => Some(CHURN_TICK),
            // Another thread may complete a sender's sample: look again soon.
            Pace::Shootout => Some(Duration::from_millis(1)),
            Pace::Interval(_) if sending => self
                .senders
                .iter()
                .filter_map(|&i| self.clients[i].sender.as_ref().map(|s| s.next_due_ns))
                .min()
                .map(|due| Duration::from_nanos(due.saturating_sub(now_ns)).min(Duration::from_millis(50))),
            _ => None,
        }
        .unwrap_or(Duration::from_millis(if traffic_start == 0 { 5 } else { 50 }))
    }

    /// One connection is readable and/or writable.
    fn on_event(&mut self, index: usize, readable: bool, read_closed: bool, writable: bool, sending: bool) {
        let Self { clients, plan, shared, interval, tally, tools, .. } = self;
        let Some(client) = clients.get_mut(index) else { return };
        if matches!(client.stage, Stage::Dead) {
            return;
        }
        let was_connecting = client.is_connecting();
        let was_closing = matches!(client.stage, Stage::Closing { .. });
        let mut ok = true;
        if writable {
            if matches!(client.stage, Stage::Connecting) {
                client.stage = Stage::Handshaking;
            }
            ok = client.flush();
        }
        if ok && readable {
            let mut recorder = Recorder { shared, tally, latency: interval };
            ok = client.read(plan, &mut recorder, tools, sending, read_closed);
        }
        // Anything queued while reading (a pong, the first message after the handshake).
        if ok && matches!(client.stage, Stage::Open | Stage::Closing { .. }) && client.unwritten() > 0 {
            ok = client.flush();
        }
        if was_connecting && (!ok || client.is_open()) {
            self.connect_finished(index, ok);
        }
        if !ok {
            self.ended(index, was_connecting, was_closing, sending);
        }
    }

    /// A handshake succeeded (`ok`) or failed: counted in the connect figures, unless it was a
    /// churn reconnection.
    fn connect_finished(&mut self, index: usize, ok: bool) {
        let client = &self.clients[index];
        if client.reconnect {
            if !ok {
                self.shared.churn_failures.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        self.in_flight -= 1;
        if ok {
            let _ =
                self.outcome.connect.record(self.shared.now_ns().saturating_sub(client.started_ns).max(1));
            self.shared.connected.fetch_add(1, Ordering::Relaxed);
        } else {
            let why = self.clients[index].failure.take().unwrap_or_else(|| "connection failed".into());
            self.shared.note_failure(why);
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A connection ended or failed; while churning, its client connects again.
    fn ended(&mut self, index: usize, was_connecting: bool, was_closing: bool, sending: bool) {
        let client = &mut self.clients[index];
        let _ = self.poll.registry().deregister(&mut client.stream);
        client.stage = Stage::Dead;
        if was_closing {
            // The server answered our close and ended the stream: one full cycle.
            self.shared.churn_cycles.fetch_add(1, Ordering::Relaxed);
        }
        if self.plan.churn.is_some() && sending {
            if !was_closing && !was_connecting {
                // An open connection the server ended: not part of a churn cycle.
                self.shared.churn_failures.fetch_add(1, Ordering::Relaxed);
            }
            self.reconnect(index);
        }
    }

    /// `--churn`: schedules each open connection's close, closes those that are due, gives up
    /// on closes that time out, retries reconnections that could not start.
    fn churn(&mut self) {
        let Some(mean) = self.plan.churn else { return };
        if self.last_churn.elapsed() < CHURN_TICK {
            return;
        }
        self.last_churn = Instant::now();
        let now_ns = self.shared.now_ns();
        let mean_ns = mean.as_nanos() as u64;
        for index in 0..self.clients.len() {
            let client = &mut self.clients[index];
            match client.stage {
                Stage::Open if client.dies_at_ns == 0 => {
                    // Uniform in [0.5, 1.5] x mean, so closes spread out rather than arriving
                    // in waves.
                    client.dies_at_ns = now_ns + mean_ns / 2 + self.tools.rng.below(mean_ns.max(1));
                }
                Stage::Open if client.dies_at_ns <= now_ns => {
                    client.start_close(now_ns + CLOSE_TIMEOUT_NS, &mut self.tools.rng);
                    if !client.flush() {
                        self.abandon(index);
                    }
                }
                Stage::Closing { deadline_ns } if deadline_ns <= now_ns => self.abandon(index),
                // A reconnection that could not even start: try again.
                Stage::Dead if client.reconnect => self.reconnect(index),
                _ => {}
            }
        }
    }

    /// Every open sender sends what its pace allows.
    fn send(&mut self) {
        let now_ns = self.shared.now_ns();
        for &index in &self.senders {
            let client = &mut self.clients[index];
            if !client.is_open() {
                continue;
            }
            let queued = client.unwritten();
            if client.top_up(&self.plan, &self.shared, &mut self.tools, now_ns)
                && queued == 0
                && !client.flush()
            {
                client.stage = Stage::Dead;
            }
        }
    }

    /// Adds this turn's deliveries and bytes to the shared counters: one atomic add per
    /// counter per turn, not per delivery.
    fn publish_tally(&mut self) {
        let tally = std::mem::take(&mut self.tally);
        let shared = &self.shared;
        for (counter, value) in [
            (&shared.delivered, tally.delivered),
            (&shared.delivered_counted, tally.delivered_counted),
            (&shared.wire_bytes, tally.wire_bytes),
            (&shared.message_bytes, tally.message_bytes),
            (&shared.handshakes, tally.handshakes),
            (&shared.handshakes_deflate, tally.handshakes_deflate),
        ] {
            if value > 0 {
                counter.fetch_add(value, Ordering::Relaxed);
            }
        }
    }

    /// Hands this thread's recent latencies to the progress reporter, a few times a second.
    fn merge_progress(&mut self) {
        if self.last_merge.elapsed() >= MERGE_EVERY {
            self.merge_latencies();
        }
    }

    /// Moves the latencies recorded since the last merge into the run's histogram and the
    /// progress reporter's.
    fn merge_latencies(&mut self) {
        let _ = self.outcome.latency.add(&self.interval);
        if let Ok(mut shared_interval) = self.shared.interval.lock() {
            let _ = shared_interval.add(&self.interval);
        }
        self.interval.reset();
        self.last_merge = Instant::now();
    }

    /// Replaces a churned (already deregistered) connection with a new one for the same
    /// client, which keeps its sender state; one that cannot start is left dead and retried.
    fn reconnect(&mut self, index: usize) {
        let client = &mut self.clients[index];
        match Client::open(&self.plan, &self.poll, client.slot, index, self.shared.now_ns()) {
            Ok(mut fresh) => {
                fresh.sender = client.sender.take();
                fresh.reconnect = true;
                *client = fresh;
            }
            Err(_) => {
                self.shared.churn_failures.fetch_add(1, Ordering::Relaxed);
                client.stage = Stage::Dead;
                client.reconnect = true;
            }
        }
    }

    /// Gives up on a churned connection whose close failed or timed out: a failure, and a new
    /// connection for the same client.
    fn abandon(&mut self, index: usize) {
        let _ = self.poll.registry().deregister(&mut self.clients[index].stream);
        self.shared.churn_failures.fetch_add(1, Ordering::Relaxed);
        self.reconnect(index);
    }
}
