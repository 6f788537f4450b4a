//! The API listener (`--api ADDR`): a third listening socket in the server's poll, and its
//! few HTTP connections, kept alive between requests. The listener and which connections are
//! kept, evicted or timed out are shared with the metrics listener
//! (`crate::metrics::side`, with the API's [`LIMITS`]); what a request means is `route.rs`'s;
//! this file only moves bytes.
//!
//! A connection reads one request at a time (at most a head and a body: see `wire.rs`) and is
//! not read again until that request's reply is written, so what it holds is bounded whatever
//! it sends. A request the chat must answer gets a [`Ticket`]: the loop hands the call to the
//! hub, and the answer back to [`answered`](ApiEndpoint::answered), this turn or, in a
//! cluster, when Redis has answered. A `POST` with an `Idempotency-Key` is looked up first
//! (`idempotency.rs`), and its answer kept for whoever repeats it, even when the connection
//! that asked has gone. Every reply is counted by endpoint and status, for `--metrics`.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, ErrorKind, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::idempotency::{Idempotency, Seen};
use super::keys::ApiKeys;
use super::route::{self, Endpoint, Local, Routed};
use super::wire::{self, Parsed, Reply, MAX_BODY, MAX_HEAD};
use crate::chat::api::{ApiAnswer, ApiCall, Ticket};
use crate::metrics::side::{write_some, SideConnection, SideListener};
use crate::metrics::slots::Limits;

/// API connections held at once; a newcomer past them takes the oldest idle one's slot.
pub const MAX_CLIENTS: usize = 64;

/// How long a connection has for a whole request (head and body), or stays open idle between
/// requests; and how long it has, from its complete request, to be answered and take its reply.
pub const LIMITS: Limits = Limits {
    capacity: MAX_CLIENTS,
    head_timeout: Duration::from_secs(10),
    reply_timeout: Duration::from_secs(10),
};

/// The listener and its open connections.
pub struct ApiEndpoint {
    side: SideListener<Client>,
    keys: ApiKeys,
    /// Longest text a message may have (`--max-message-size`).
    max_text: usize,
    next_ticket: Ticket,
    /// Calls the chat has not answered yet: their endpoint, and their idempotency key.
    asked: HashMap<Ticket, (Endpoint, Option<String>)>,
    idempotency: Idempotency,
    /// Replies given, by endpoint (None: no endpoint named, or the request unreadable) and
    /// status.
    counts: BTreeMap<(Option<&'static str>, u16), u64>,
}

struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    /// What it sent and is not handled yet (at most one request, and what came with it).
    input: Vec<u8>,
    state: State,
    /// Requests answered so far: kept alive after them, its silence is no misbehaviour.
    answered: u64,
}

impl SideConnection for Client {
    fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn idles_by_right(&self) -> bool {
        self.answered > 0 && self.input.is_empty()
    }
}

enum State {
    /// Reading a request.
    Reading,
    /// Its request waits on the chat.
    Asking { ticket: Ticket, keep_alive: bool },
    /// Its reply, and how much of it is written.
    Replying { reply: Vec<u8>, written: usize, keep_alive: bool },
}

impl ApiEndpoint {
    /// Listens on `addr`, registered under `listener_token`; connections get tokens from
    /// `first_token` on (registered once for both directions: a connection is read and written
    /// in turn, and a spurious event costs a look at its state).
    pub fn bind(
        addr: SocketAddr,
        (keys, max_text): (ApiKeys, usize),
        registry: &Registry,
        listener_token: Token,
        first_token: usize,
    ) -> io::Result<Self> {
        let naming = ("api: ", Interest::READABLE | Interest::WRITABLE);
        let side = SideListener::bind(addr, registry, (listener_token, first_token), LIMITS, naming)?;
        Ok(Self {
            side,
            keys,
            max_text,
            next_ticket: 0,
            asked: HashMap::new(),
            idempotency: Idempotency::default(),
            counts: BTreeMap::new(),
        })
    }

    /// Replies given so far: (endpoint, status, count), `other` for requests that named no
    /// endpoint.
    pub fn counts(&self) -> Vec<(&'static str, u16, u64)> {
        self.counts.iter().map(|(&(endpoint, status), &n)| (endpoint.unwrap_or("other"), status, n)).collect()
    }

    fn count(&mut self, endpoint: Option<Endpoint>, status: u16) {
        *self.counts.entry((endpoint.map(Endpoint::name), status)).or_default() += 1;
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.side.local_addr()
    }

    /// The keys in force, to reload them from.
    pub fn keys(&self) -> &ApiKeys {
        &self.keys
    }

    /// New keys (SIGHUP): every request from now on is checked against them.
    pub fn set_keys(&mut self, keys: ApiKeys) {
        self.keys = keys;
    }

    /// Whether an event with this token is the endpoint's.
    pub fn owns(&self, token: Token) -> bool {
        self.side.owns(token)
    }

    /// When [`on_timers`](Self::on_timers) has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.side.next_deadline()
    }

    /// A readiness event for the listener or a connection; `ask` hands a call to the chat.
    pub fn on_event(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
        ask: &mut dyn FnMut(Ticket, ApiCall),
    ) {
        match self.side.key_of(token) {
            Some(key) => self.serve(registry, key, now, ask),
            None => self.accept(registry, now, ask),
        }
    }

    /// Closes connections past their deadline, and accepts again once a pause is over.
    pub fn on_timers(&mut self, registry: &Registry, now: Instant, ask: &mut dyn FnMut(Ticket, ApiCall)) {
        self.side.close_expired(registry, now);
        if self.side.resume_if_due(now) {
            self.accept(registry, now, ask);
        }
    }

    /// The chat's answer to call `ticket`: its reply goes out (if its connection is still open).
    pub fn answered(
        &mut self,
        registry: &Registry,
        ticket: Ticket,
        answer: ApiAnswer,
        local: Local,
        now: Instant,
        ask: &mut dyn FnMut(Ticket, ApiCall),
    ) {
        let Some((endpoint, idempotency_key)) = self.asked.remove(&ticket) else { return };
        let reply = route::answer(endpoint, answer, local);
        self.count(Some(endpoint), reply.status);
        if let Some(idempotency_key) = idempotency_key {
            self.idempotency.answered(&idempotency_key, &reply);
        }
        let asked = |c: &Client| matches!(c.state, State::Asking { ticket: t, .. } if t == ticket);
        let Some(key) = self.side.slots.find(asked) else { return };
        let Some(client) = self.side.slots.get_mut(key) else { return };
        if let State::Asking { keep_alive, .. } = client.state {
            client.state = State::Replying { reply: reply.encode(keep_alive), written: 0, keep_alive };
        }
        self.serve(registry, key, now, ask);
    }

    fn accept(&mut self, registry: &Registry, now: Instant, ask: &mut dyn FnMut(Ticket, ApiCall)) {
        let client =
            |stream, peer| Client { stream, peer, input: Vec::new(), state: State::Reading, answered: 0 };
        while let Some(admitted) = self.side.accept_next(registry, now, client) {
            if let Some(key) = admitted {
                self.serve(registry, key, now, ask);
            }
        }
    }

    /// Moves connection `key` on as far as it can go now: reads and routes its request, writes
    /// its reply, and starts on the next request of a connection kept alive.
    fn serve(&mut self, registry: &Registry, key: usize, now: Instant, ask: &mut dyn FnMut(Ticket, ApiCall)) {
        loop {
            let Some(client) = self.side.slots.get_mut(key) else { return };
            match &mut client.state {
                State::Asking { .. } => return,
                State::Reading => {
                    let (parsed, eof) = match read_request(client) {
                        Ok(read) => read,
                        Err(_) => return self.side.close(registry, key, now),
                    };
                    let (endpoint, reply, keep_alive) = match parsed {
                        Parsed::Partial if eof => return self.side.close(registry, key, now),
                        Parsed::Partial => return,
                        Parsed::Refused(reply) => (None, reply, false),
                        Parsed::Complete(request, used) => {
                            client.input.drain(..used);
                            let keep_alive = request.keep_alive && !eof;
                            let routed = route::route(&request, &self.keys, self.max_text);
                            let (endpoint, call) = match routed {
                                Routed::Reply(endpoint, reply) => (endpoint, Err(reply)),
                                Routed::Ask(endpoint, call) => (Some(endpoint), Ok((endpoint, call))),
                            };
                            let idempotency_key =
                                request.idempotency_key.filter(|_| request.method == "POST");
                            let seen = match (&call, &idempotency_key) {
                                (Ok(_), Some(k)) => {
                                    self.idempotency.check(k, &request.path, &request.body, now)
                                }
                                _ => Seen::New,
                            };
                            match (call, seen) {
                                (Err(reply), _) | (_, Seen::Again(reply) | Seen::Refused(reply)) => {
                                    (endpoint, reply, keep_alive)
                                }
                                (Ok((endpoint, call)), Seen::New) => {
                                    self.next_ticket += 1;
                                    let ticket = self.next_ticket;
                                    self.asked.insert(ticket, (endpoint, idempotency_key));
                                    client.state = State::Asking { ticket, keep_alive };
                                    self.side.slots.answering(key, now);
                                    return ask(ticket, call);
                                }
                            }
                        }
                    };
                    self.count(endpoint, reply.status);
                    let Some(client) = self.side.slots.get_mut(key) else { return };
                    client.state =
                        State::Replying { reply: reply.encode(keep_alive), written: 0, keep_alive };
                    self.side.slots.answering(key, now);
                }
                State::Replying { reply, written, keep_alive } => {
                    let keep_alive = *keep_alive;
                    match write_some(&mut client.stream, reply, written) {
                        Ok(false) => return,
                        Ok(true) if keep_alive => {
                            client.state = State::Reading;
                            client.answered += 1;
                            self.side.slots.waiting(key, now);
                        }
                        Ok(true) | Err(_) => return self.side.close(registry, key, now),
                    }
                }
            }
        }
    }
}

/// Reads what the socket has, up to one whole request, and parses it: what the input amounts
/// to, and whether the client has finished sending.
fn read_request(client: &mut Client) -> io::Result<(Parsed, bool)> {
    let mut chunk = [0u8; 4096];
    loop {
        let parsed = wire::parse(&client.input);
        if !matches!(parsed, Parsed::Partial) {
            return Ok((parsed, false));
        }
        // A partial request is under its bounds (parse refuses it otherwise); this is a guard.
        if client.input.len() > MAX_HEAD + MAX_BODY {
            return Ok((Parsed::Refused(Reply::error(413, "request too large")), false));
        }
        match client.stream.read(&mut chunk) {
            Ok(0) => return Ok((parsed, true)),
            Ok(n) => client.input.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok((parsed, false)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
