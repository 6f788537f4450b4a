//! The simulation: the server's [`Hub`] and its connections run over scripted in-memory
//! sockets, with a virtual clock, several clients at once. Property tests and fuzz targets use
//! it to put arbitrary input through the *same* code the server runs (request heads, upgrade,
//! frame reading with its budgets, the rate limit, closing, the chat, fan-out and the
//! `--max-outbound` verdict, timers); only the poll loop and the operating system are left out.
//!
//! A test plays every client: it connects, sends bytes (split into pieces of any size), decides
//! how much each client's socket accepts (everything, nothing, or a window that it drains), and
//! lets time pass. [`Simulation::step`] is one turn of the server's loop, in the loop's own
//! order: readiness, left-over reads, timers, the exchange with the broker, flush. What each
//! client received is parsed back into its HTTP status and frames.
//!
//! [`scenarios`] holds the drivers shared by the property tests and the fuzz targets.
//!
//! **Cluster.** A simulation runs with the in-process broker by default; given another broker
//! ([`Simulation::with_broker`]) it is one process of a [`SimCluster`]: N processes, each with
//! the server's own Redis broker, one simulated Redis between them, one virtual clock, one
//! seed. The parts:
//! - `redis.rs`: the keyspace and what each of the cluster's Redis scripts does to it;
//! - `net.rs`: the Redis server and the wires to it (delays, per-channel order, cut links,
//!   restarts with or without data);
//! - `commands.rs` and `wire.rs`: the brokers' connections to it, speaking RESP as Redis does;
//! - `cluster.rs`: [`SimCluster`], the processes and their clients stepped together;
//! - `observe.rs` and `script.rs`: what each client saw, and the scripted runs the cluster
//!   property tests and fuzz target share, with the rules they check.

pub mod cluster;
mod commands;
pub mod net;
pub mod observe;
pub mod redis;
pub mod scenarios;
pub mod script;
pub mod socket;
pub mod wire;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::Token;

pub use cluster::SimCluster;
pub use socket::{Pipe, PipeRef, SimSocket};

use crate::broker::Broker;
use crate::chat::JSON_SUBPROTOCOL;
use crate::connection::Reading;
use crate::server::Hub;
use crate::settings::Settings;
use crate::wire::{client_frame, parse_header, UpgradeRequest};

/// Turns [`Simulation::settle`] allows before it decides the server is spinning.
const SETTLE_TURNS: usize = 100_000;

/// A client of the simulation, by its index (stable even after its connection is gone).
pub type ClientIx = usize;

/// A frame as a client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Received {
    /// The status code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

struct SimClient {
    pipe: PipeRef,
    key: usize,
    /// New input the hub has not been told about (readiness is edge-triggered).
    readable: bool,
    /// The window grew: the hub is told if it waits for WRITABLE.
    writable: bool,
    /// How far `to_client` has been parsed.
    parsed: usize,
    status: Option<u16>,
    frames: Vec<Received>,
}

/// The hub, its scripted clients, and the virtual time.
pub struct Simulation {
    hub: Hub<SimSocket>,
    now: Instant,
    clients: Vec<SimClient>,
    /// What the poll has to say of the broker's sockets this turn: (token, readable, writable).
    broker_ready: Vec<(Token, bool, bool)>,
}

impl Simulation {
    pub fn new(settings: Settings) -> Self {
        let now = Instant::now();
        Self { hub: Hub::new(settings, now), now, clients: Vec::new(), broker_ready: Vec::new() }
    }

    /// A simulation whose chat reaches other processes through `broker`.
    pub fn with_broker(settings: Settings, broker: Box<dyn Broker>) -> Self {
        let now = Instant::now();
        Self {
            hub: Hub::with_broker(settings, broker, now),
            now,
            clients: Vec::new(),
            broker_ready: Vec::new(),
        }
    }

    /// The next turn's poll reports one of the broker's sockets readable or writable.
    pub fn broker_ready(&mut self, token: Token, readable: bool, writable: bool) {
        self.broker_ready.push((token, readable, writable));
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Sets the virtual time (never backwards): a cluster keeps its processes on one clock.
    pub fn set_now(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    pub fn hub(&self) -> &Hub<SimSocket> {
        &self.hub
    }

    pub fn settings(&self) -> &Settings {
        self.hub.settings()
    }

    /// A new connection that sends `request` (any bytes); its socket accepts everything.
    pub fn connect(&mut self, request: &[u8]) -> ClientIx {
        let pipe = PipeRef::default();
        let ix = self.clients.len();
        let peer = SocketAddr::from(([127, 0, 0, 1], 10_000 + (ix % 50_000) as u16));
        let key = self.hub.admit(SimSocket(pipe.clone()), peer, self.now);
        self.clients.push(SimClient {
            pipe,
            key,
            readable: false,
            writable: false,
            parsed: 0,
            status: None,
            frames: Vec::new(),
        });
        self.send(ix, request);
        ix
    }

    /// A client that completed the WebSocket handshake on `path` (e.g. `/`, `/?nick=ann`,
    /// `/echo`); panics if the server did not answer 101.
    pub fn upgrade(&mut self, path: &str) -> ClientIx {
        let ix = self.connect(&upgrade_request(path));
        self.settle();
        assert_eq!(self.status(ix), Some(101), "upgrade to {path} refused");
        ix
    }

    /// Like [`upgrade`](Self::upgrade), offering permessage-deflate (which the server accepts
    /// unless `--deflate off`).
    pub fn upgrade_offering_deflate(&mut self, path: &str) -> ClientIx {
        let request =
            UpgradeRequest::new("sim", path).header("Sec-WebSocket-Extensions", "permessage-deflate");
        let ix = self.connect(&request.to_bytes());
        self.settle();
        assert_eq!(self.status(ix), Some(101), "upgrade to {path} refused");
        ix
    }

    /// The client sends raw bytes.
    pub fn send(&mut self, ix: ClientIx, bytes: &[u8]) {
        let client = &mut self.clients[ix];
        if bytes.is_empty() {
            return;
        }
        client.pipe.borrow_mut().to_server.extend(bytes);
        client.readable = true;
    }

    /// The client sends a text message in one masked frame.
    pub fn send_text(&mut self, ix: ClientIx, text: &str) {
        self.send(ix, &client_frame(0x81, text.as_bytes(), Some([0x37, 0xfa, 0x21, 0x3d])));
    }

    /// The client closes its sending side (the server reads EOF after what was sent).
    pub fn shut_down_input(&mut self, ix: ClientIx) {
        let client = &mut self.clients[ix];
        client.pipe.borrow_mut().client_closed = true;
        client.readable = true;
    }

    /// The server's reads of this client return at most `piece` bytes (0: no limit).
    pub fn set_piece(&mut self, ix: ClientIx, piece: usize) {
        self.clients[ix].pipe.borrow_mut().piece = piece;
    }

    /// How many more bytes this client's socket accepts (None: everything, from now on).
    pub fn set_window(&mut self, ix: ClientIx, window: Option<usize>) {
        let client = &mut self.clients[ix];
        client.pipe.borrow_mut().window = window;
        client.writable = true;
    }

    /// The client reads `n` bytes from its socket: the window grows by that much.
    pub fn drain(&mut self, ix: ClientIx, n: usize) {
        let client = &mut self.clients[ix];
        if let Some(window) = &mut client.pipe.borrow_mut().window {
            *window += n;
        }
        client.writable = true;
    }

    /// One turn of the server's loop, in the loop's order.
    pub fn step(&mut self) {
        let now = self.now;
        let carried = self.hub.take_unfinished_reads();
        for (token, readable, writable) in std::mem::take(&mut self.broker_ready) {
            self.hub.broker_mut().on_event(token, readable, writable, now);
        }
        for client in &mut self.clients {
            let (writable, readable) =
                (std::mem::take(&mut client.writable), std::mem::take(&mut client.readable));
            // Bytes sent to a connection the server already dropped go nowhere (and its slab
            // key may belong to someone else by now).
            if client.pipe.borrow().server_dropped {
                continue;
            }
            if writable && self.hub.connection(client.key).is_some_and(|c| c.wants_writable()) {
                self.hub.on_writable(client.key);
            }
            if readable {
                let closed = client.pipe.borrow().client_closed;
                let reading = if closed { Reading::ToEnd } else { Reading::UntilShort };
                self.hub.on_readable(client.key, reading, now);
            }
        }
        for key in carried {
            self.hub.on_readable(key, Reading::Open, now);
        }
        self.hub.fire_timers(now);
        self.hub.broker_turn(now);
        self.hub.flush(now);
        while self.hub.pop_interest_change().is_some() {}
        while self.hub.pop_released().is_some() {}
    }

    /// No input waits to be read: every client's bytes have been taken (or its connection is
    /// gone), and no read was cut short.
    pub fn is_quiet(&self) -> bool {
        !self.hub.has_unfinished_reads()
            && !self.hub.broker().holds_unsent()
            && self.clients.iter().all(|c| {
                let pipe = c.pipe.borrow();
                pipe.server_dropped || (!c.readable && pipe.to_server.is_empty())
            })
    }

    /// When this process next needs a turn without new input: its hub's timers and its
    /// broker's.
    pub fn wake_at(&self) -> Option<Instant> {
        let hub = self.hub.next_wakeup(self.now);
        hub.into_iter().chain(self.hub.broker().wake_at(self.now)).min()
    }

    /// Steps until no input is waiting to be read; panics if that never happens.
    pub fn settle(&mut self) {
        for _ in 0..SETTLE_TURNS {
            self.step();
            if !self.hub.has_unfinished_reads() && self.clients.iter().all(|c| !c.readable) {
                return;
            }
        }
        panic!("the server still had input to read after {SETTLE_TURNS} turns");
    }

    /// Lets `by` pass, then runs a turn (timers fire).
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.settle();
    }

    /// The server still holds this client's connection.
    pub fn is_connected(&self, ix: ClientIx) -> bool {
        !self.clients[ix].pipe.borrow().server_dropped
    }

    /// The server half-closed this connection (it sent its last bytes).
    pub fn is_write_shut(&self, ix: ClientIx) -> bool {
        self.clients[ix].pipe.borrow().server_shut_write
    }

    /// The server still sends this client messages (it is open and not being closed).
    pub fn accepts_messages(&self, ix: ClientIx) -> bool {
        let client = &self.clients[ix];
        !client.pipe.borrow().server_dropped
            && self.hub.connection(client.key).is_some_and(|c| c.accepts_messages())
    }

    /// The server holds no protocol state for this open, idle client.
    pub fn is_parked(&self, ix: ClientIx) -> bool {
        self.hub.connection(self.clients[ix].key).is_some_and(|c| c.is_parked())
    }

    /// Bytes the server holds for this client.
    pub fn queued(&self, ix: ClientIx) -> usize {
        let client = &self.clients[ix];
        if client.pipe.borrow().server_dropped {
            return 0;
        }
        self.hub.connection(client.key).map_or(0, |c| c.queued())
    }

    /// The HTTP status the server answered with, once its head arrived.
    pub fn status(&mut self, ix: ClientIx) -> Option<u16> {
        self.parse(ix);
        self.clients[ix].status
    }

    /// Every frame the client received after the 101.
    pub fn frames(&mut self, ix: ClientIx) -> &[Received] {
        self.parse(ix);
        &self.clients[ix].frames
    }

    /// The hub's key (the chat's client id) of this client's connection.
    pub fn key(&self, ix: ClientIx) -> usize {
        self.clients[ix].key
    }

    /// The text messages the client received.
    pub fn texts(&mut self, ix: ClientIx) -> Vec<String> {
        self.frames(ix)
            .iter()
            .filter(|f| f.opcode == 1)
            .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
            .collect()
    }

    /// The close code the client received, if any.
    pub fn close_code(&mut self, ix: ClientIx) -> Option<u16> {
        self.frames(ix).iter().find_map(Received::close_code)
    }

    fn parse(&mut self, ix: ClientIx) {
        let client = &mut self.clients[ix];
        let pipe = client.pipe.borrow();
        let bytes = &pipe.to_client[client.parsed..];
        if client.status.is_none() {
            let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            let head = String::from_utf8_lossy(&bytes[..end]);
            client.status = head.get(9..12).and_then(|code| code.parse().ok());
            client.parsed += end + 4;
        }
        if client.status != Some(101) {
            return;
        }
        while let Some(header) = parse_header(&pipe.to_client[client.parsed..]) {
            let frame = &pipe.to_client[client.parsed..];
            let Some(payload) = header.frame_len().and_then(|end| frame.get(header.payload_start..end))
            else {
                return;
            };
            client.frames.push(Received { opcode: header.opcode(), payload: payload.to_vec() });
            client.parsed += header.payload_start + payload.len();
        }
    }
}

/// The sample upgrade request for `path`.
fn upgrade_request(path: &str) -> Vec<u8> {
    UpgradeRequest::new("sim", path).to_bytes()
}

/// The sample upgrade request for `path`, asking for JSON mode (`wschat.json`).
pub fn json_upgrade_request(path: &str) -> Vec<u8> {
    UpgradeRequest::new("sim", path).header("Sec-WebSocket-Protocol", JSON_SUBPROTOCOL).to_bytes()
}
