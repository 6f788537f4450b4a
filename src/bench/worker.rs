//! One bench thread: a mio poll loop driving its share of the client connections through
//! connect, handshake and traffic, recording connect and delivery latencies.
//!
//! Received frames are parsed in place in a per-connection buffer and scanned for a token; no
//! message is allocated. Pings are answered; everything that is not a token is ignored.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token as MioToken};

use super::wire::{self, Token};
use crate::wire::UpgradeRequest;

/// State shared by the workers and the coordinating thread.
pub struct Shared {
    pub epoch: Instant,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    /// Messages sent, and deliveries seen, inside the measured window: the report's figures,
    /// and what the drain waits for.
    pub sent_counted: AtomicU64,
    pub delivered_counted: AtomicU64,
    /// Nanoseconds since `epoch` at which counted traffic starts; 0 until traffic may start.
    pub traffic_start_ns: AtomicU64,
    pub measure_from_ns: AtomicU64,
    pub measure_until_ns: AtomicU64,
    pub stop_sending: AtomicBool,
    pub stop: AtomicBool,
    /// Churned connections that closed cleanly (`--churn`).
    pub churn_cycles: AtomicU64,
    /// While churning: closes that timed out, reconnections that failed, and open
    /// connections the server ended.
    pub churn_failures: AtomicU64,
    /// Latencies of the last progress interval, merged in by workers, taken by the reporter.
    pub interval: Mutex<Histogram<u64>>,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            sent_counted: AtomicU64::new(0),
            delivered_counted: AtomicU64::new(0),
            traffic_start_ns: AtomicU64::new(0),
            measure_from_ns: AtomicU64::new(u64::MAX),
            measure_until_ns: AtomicU64::new(u64::MAX),
            stop_sending: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            churn_cycles: AtomicU64::new(0),
            churn_failures: AtomicU64::new(0),
            interval: Mutex::new(latency_histogram()),
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

/// Latencies in nanoseconds, 1 ns to 100 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// How this thread sends.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each sender keeps at most this many of its messages unacknowledged (not yet received
    /// back by itself).
    Window(u64),
    /// Each sender sends one message every this many nanoseconds.
    Interval(u64),
    /// No sending at all (`--idle`).
    Idle,
}

/// What one worker is asked to do.
pub struct Plan {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    /// This worker's clients, in the order they are opened.
    pub clients: Vec<Slot>,
    pub connect_concurrency: usize,
    pub size: usize,
    pub pace: Pace,
    /// Senders across all threads, to stagger their start evenly over one interval.
    pub total_senders: u32,
    /// Mean connection lifetime once traffic starts (`--churn`): each connection closes
    /// cleanly after a random 0.5 to 1.5 times this, and its client connects again at once.
    pub churn: Option<Duration>,
}

/// One client of a plan.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    /// Global sender id if this client sends.
    pub sender: Option<u32>,
    /// Text sent as soon as each of its handshakes completes (`--room`'s `/join`).
    pub first_message: Option<Vec<u8>>,
}

/// What one worker measured.
pub struct Outcome {
    pub connect: Histogram<u64>,
    pub latency: Histogram<u64>,
}

enum Stage {
    Connecting,
    Handshaking,
    Open,
    /// Our close frame is queued or sent; waiting for the server's close and end of stream.
    Closing {
        deadline_ns: u64,
    },
    Dead,
}

struct Sender {
    id: u32,
    next_seq: u64,
    acked: u64,
    next_due_ns: u64,
}

struct Client {
    stream: TcpStream,
    /// Index into `Plan::clients`.
    slot: usize,
    stage: Stage,
    /// A churn reconnection: not counted in the initial connect figures.
    reconnect: bool,
    /// When churn closes this connection (0: not scheduled yet).
    dies_at_ns: u64,
    started_ns: u64,
    rbuf: Vec<u8>,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    sender: Option<Sender>,
    mask_state: u32,
}

const READ_CHUNK: usize = 16 * 1024;
/// Largest server frame the bench accepts.
const MAX_FRAME: usize = 64 << 20;
/// How long a churned connection may take to finish its close handshake.
const CLOSE_TIMEOUT_NS: u64 = 5_000_000_000;
/// How often connections due to churn are looked for.
const CHURN_TICK: Duration = Duration::from_millis(10);

pub fn run(plan: Plan, shared: Arc<Shared>) -> io::Result<Outcome> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut clients: Vec<Client> = Vec::with_capacity(plan.clients.len());
    let mut outcome = Outcome { connect: latency_histogram(), latency: latency_histogram() };
    let mut interval = latency_histogram();
    let mut last_merge = Instant::now();
    let mut next_to_open = 0;
    let mut in_flight = 0;
    let mut last_churn = Instant::now();
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D ^ plan.clients.len() as u64);
    let mut scratch = Vec::with_capacity(plan.size.max(wire::TOKEN_LEN));

    loop {
        // Open more connections, keeping at most `connect_concurrency` handshakes in flight.
        while in_flight < plan.connect_concurrency && next_to_open < plan.clients.len() {
            let index = clients.len();
            match open(&plan, &poll, next_to_open, index, shared.now_ns()) {
                Ok(mut client) => {
                    client.mask_state = 0x9E37_79B9 ^ (index as u32).wrapping_mul(2_654_435_761);
                    clients.push(client);
                    in_flight += 1;
                }
                Err(_) => {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            next_to_open += 1;
        }

        let now_ns = shared.now_ns();
        let traffic_start = shared.traffic_start_ns.load(Ordering::Acquire);
        let sending = traffic_start != 0 && !shared.stop_sending.load(Ordering::Acquire);
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let timeout = match plan.pace {
            _ if sending && plan.churn.is_some() => Some(CHURN_TICK),
            Pace::Interval(_) if sending => {
                clients.iter().filter_map(|c| c.sender.as_ref().map(|s| s.next_due_ns)).min().map(|due| {
                    Duration::from_nanos(due.saturating_sub(now_ns)).min(Duration::from_millis(50))
                })
            }
            _ => None,
        }
        .unwrap_or(Duration::from_millis(if traffic_start == 0 { 5 } else { 50 }));
        match poll.poll(&mut events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }

        for event in events.iter() {
            let index = event.token().0;
            let Some(client) = clients.get_mut(index) else { continue };
            if matches!(client.stage, Stage::Dead) {
                continue;
            }
            let was_connecting = matches!(client.stage, Stage::Connecting | Stage::Handshaking);
            let was_closing = matches!(client.stage, Stage::Closing { .. });
            let mut ok = true;
            if event.is_writable() {
                if matches!(client.stage, Stage::Connecting) {
                    client.stage = Stage::Handshaking;
                }
                ok = flush(client);
            }
            if ok && (event.is_readable() || event.is_read_closed() || event.is_error()) {
                ok = read(client, &shared, &plan, &mut scratch, &mut outcome, &mut interval, sending);
            }
            // Anything queued while reading (a pong, the first message after the handshake).
            if ok
                && matches!(client.stage, Stage::Open | Stage::Closing { .. })
                && client.wpos < client.wbuf.len()
            {
                ok = flush(client);
            }
            let now_open = ok && matches!(client.stage, Stage::Open);
            if was_connecting && (now_open || !ok) {
                if client.reconnect {
                    if !ok {
                        shared.churn_failures.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    in_flight -= 1;
                    if now_open {
                        let _ =
                            outcome.connect.record(shared.now_ns().saturating_sub(client.started_ns).max(1));
                        shared.connected.fetch_add(1, Ordering::Relaxed);
                    } else {
                        shared.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if !ok {
                let _ = poll.registry().deregister(&mut client.stream);
                client.stage = Stage::Dead;
                if was_closing {
                    // The server answered our close and ended the stream: one full cycle.
                    shared.churn_cycles.fetch_add(1, Ordering::Relaxed);
                }
                if plan.churn.is_some() && sending {
                    if !was_closing && !was_connecting {
                        // An open connection the server ended: not part of a churn cycle.
                        shared.churn_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    reconnect(&mut clients[index], &plan, &poll, &shared, index);
                }
            }
        }

        if let Some(mean) = plan.churn.filter(|_| sending && last_churn.elapsed() >= CHURN_TICK) {
            last_churn = Instant::now();
            let now_ns = shared.now_ns();
            for (index, client) in clients.iter_mut().enumerate() {
                match client.stage {
                    Stage::Open if client.dies_at_ns == 0 => {
                        // Uniform in [0.5, 1.5] x mean, so closes spread out rather than
                        // arriving in waves.
                        let mean_ns = mean.as_nanos() as u64;
                        client.dies_at_ns = now_ns + mean_ns / 2 + rng.next() % mean_ns.max(1);
                    }
                    Stage::Open if client.dies_at_ns <= now_ns => {
                        crate::wire::push_client_frame(
                            &mut client.wbuf,
                            0x88,
                            &1000u16.to_be_bytes(),
                            Some([9, 9, 9, 9]),
                        );
                        client.stage = Stage::Closing { deadline_ns: now_ns + CLOSE_TIMEOUT_NS };
                        if !flush(client) {
                            abandon(client, &plan, &poll, &shared, index);
                        }
                    }
                    Stage::Closing { deadline_ns } if deadline_ns <= now_ns => {
                        abandon(client, &plan, &poll, &shared, index);
                    }
                    // A reconnection that could not even start: try again.
                    Stage::Dead if client.reconnect => reconnect(client, &plan, &poll, &shared, index),
                    _ => {}
                }
            }
        }

        if sending {
            let now_ns = shared.now_ns();
            for client in clients.iter_mut().filter(|c| matches!(c.stage, Stage::Open)) {
                let queued = client.wbuf.len() - client.wpos;
                if top_up(client, &plan, &shared, &mut scratch, now_ns) && queued == 0 && !flush(client) {
                    client.stage = Stage::Dead;
                }
            }
        }

        if last_merge.elapsed() >= Duration::from_millis(200) {
            if let Ok(mut shared_interval) = shared.interval.lock() {
                let _ = shared_interval.add(&interval);
            }
            interval.reset();
            last_merge = Instant::now();
        }
    }
    Ok(outcome)
}

/// Starts connecting client `slot` of the plan, registered under `index`.
fn open(plan: &Plan, poll: &Poll, slot: usize, index: usize, now_ns: u64) -> io::Result<Client> {
    let mut stream = TcpStream::connect(plan.addr)?;
    // Nagle would hold a sender's small frames behind unacknowledged ones.
    let _ = stream.set_nodelay(true);
    poll.registry().register(&mut stream, MioToken(index), Interest::READABLE | Interest::WRITABLE)?;
    let sender = plan.clients[slot].sender.map(|id| Sender { id, next_seq: 0, acked: 0, next_due_ns: 0 });
    Ok(Client {
        stream,
        slot,
        stage: Stage::Connecting,
        reconnect: false,
        dies_at_ns: 0,
        started_ns: now_ns,
        rbuf: vec![0; READ_CHUNK],
        rlen: 0,
        wbuf: UpgradeRequest::new(&plan.host, &plan.path).to_bytes(),
        wpos: 0,
        sender,
        mask_state: 0,
    })
}

/// Replaces a churned (already deregistered) connection with a new one for the same client,
/// which keeps its sender state; a connection that cannot start is left dead and retried.
fn reconnect(client: &mut Client, plan: &Plan, poll: &Poll, shared: &Shared, index: usize) {
    match open(plan, poll, client.slot, index, shared.now_ns()) {
        Ok(mut fresh) => {
            fresh.sender = client.sender.take();
            fresh.mask_state = client.mask_state;
            fresh.reconnect = true;
            *client = fresh;
        }
        Err(_) => {
            shared.churn_failures.fetch_add(1, Ordering::Relaxed);
            client.stage = Stage::Dead;
            client.reconnect = true;
        }
    }
}

/// Gives up on a churned connection whose close failed or timed out: a failure, and a new
/// connection for the same client.
fn abandon(client: &mut Client, plan: &Plan, poll: &Poll, shared: &Shared, index: usize) {
    let _ = poll.registry().deregister(&mut client.stream);
    shared.churn_failures.fetch_add(1, Ordering::Relaxed);
    reconnect(client, plan, poll, shared, index);
}

/// A small, fast pseudo-random generator for churn lifetimes (not for anything secret).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Sends whatever the pace allows now; returns true if anything was queued.
fn top_up(client: &mut Client, plan: &Plan, shared: &Shared, scratch: &mut Vec<u8>, now_ns: u64) -> bool {
    let Some(sender) = client.sender.as_mut() else { return false };
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
        };
        if !due {
            return queued;
        }
        let token = Token { sender: sender.id, seq: sender.next_seq, sent_ns: now_ns };
        scratch.clear();
        token.write(scratch);
        scratch.resize(plan.size.max(wire::TOKEN_LEN), b'x');
        client.mask_state ^= client.mask_state << 13;
        client.mask_state ^= client.mask_state >> 17;
        client.mask_state ^= client.mask_state << 5;
        crate::wire::push_client_frame(
            &mut client.wbuf,
            0x81,
            scratch,
            Some(client.mask_state.to_le_bytes()),
        );
        sender.next_seq += 1;
        if let Pace::Interval(step) = plan.pace {
            sender.next_due_ns += step;
        }
        shared.sent.fetch_add(1, Ordering::Relaxed);
        if counted(shared, now_ns) {
            shared.sent_counted.fetch_add(1, Ordering::Relaxed);
        }
        queued = true;
    }
}

fn counted(shared: &Shared, sent_ns: u64) -> bool {
    sent_ns >= shared.measure_from_ns.load(Ordering::Relaxed)
        && sent_ns < shared.measure_until_ns.load(Ordering::Relaxed)
}

/// Writes queued bytes until done or blocked; false if the connection failed.
fn flush(client: &mut Client) -> bool {
    while client.wpos < client.wbuf.len() {
        match client.stream.write(&client.wbuf[client.wpos..]) {
            Ok(0) => return false,
            Ok(n) => client.wpos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return true,
            Err(_) => return false,
        }
    }
    client.wbuf.clear();
    client.wpos = 0;
    true
}

/// Reads until blocked, handling the handshake response and every complete frame; false if
/// the connection ended or failed.
fn read(
    client: &mut Client,
    shared: &Shared,
    plan: &Plan,
    scratch: &mut Vec<u8>,
    outcome: &mut Outcome,
    interval: &mut Histogram<u64>,
    sending: bool,
) -> bool {
    loop {
        if client.rbuf.len() - client.rlen < READ_CHUNK / 2 {
            let frame_len = wire::frame_len_hint(&client.rbuf[..client.rlen]).unwrap_or(0);
            if frame_len > MAX_FRAME {
                return false; // a server announcing an absurd frame: drop it, do not allocate it
            }
            client.rbuf.resize(frame_len.max(client.rlen + READ_CHUNK), 0);
        }
        match client.stream.read(&mut client.rbuf[client.rlen..]) {
            Ok(0) => return false,
            Ok(n) => client.rlen += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
        let mut at = 0;
        if matches!(client.stage, Stage::Connecting | Stage::Handshaking) {
            let Some(end) = client.rbuf[..client.rlen].windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            if !client.rbuf.starts_with(b"HTTP/1.1 101") {
                return false;
            }
            client.stage = Stage::Open;
            at = end + 4;
            if let Some(text) = &plan.clients[client.slot].first_message {
                // Queued ahead of any traffic; the server handles a connection's messages in
                // order, so everything this client sends later goes to the joined room.
                crate::wire::push_client_frame(&mut client.wbuf, 0x81, text, Some([3, 1, 4, 1]));
            }
        }
        let now_ns = shared.now_ns();
        while let Some(frame) = wire::parse_frame(&client.rbuf[at..client.rlen]) {
            let payload = &client.rbuf[at + frame.payload.0..at + frame.payload.1];
            match frame.opcode {
                1 | 0 => {
                    if let Some(token) = Token::find(payload) {
                        shared.delivered.fetch_add(1, Ordering::Relaxed);
                        if counted(shared, token.sent_ns) {
                            shared.delivered_counted.fetch_add(1, Ordering::Relaxed);
                            let latency = now_ns.saturating_sub(token.sent_ns).max(1);
                            let _ = outcome.latency.record(latency);
                            let _ = interval.record(latency);
                        }
                        if let Some(sender) = client.sender.as_mut() {
                            if token.sender == sender.id {
                                sender.acked = sender.acked.max(token.seq + 1);
                            }
                        }
                    }
                }
                9 => {
                    scratch.clear();
                    scratch.extend_from_slice(payload);
                    crate::wire::push_client_frame(&mut client.wbuf, 0x8A, scratch, Some([7, 7, 7, 7]));
                }
                8 => return false,
                _ => {}
            }
            at += frame.len;
        }
        client.rbuf.copy_within(at..client.rlen, 0);
        client.rlen -= at;
        if sending && client.sender.is_some() && matches!(client.stage, Stage::Open) {
            top_up(client, plan, shared, scratch, now_ns);
        }
    }
}
