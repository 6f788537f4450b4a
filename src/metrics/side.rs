//! A small HTTP listener beside the chat's, in the same poll: its socket, its connections'
//! tokens and slots (kept, evicted and timed out by `slots.rs`'s policy), accepting with the
//! chat listener's back-off. The metrics listener (`endpoint.rs`) and the API's
//! (`crate::api::endpoint`) are each one, over a connection type of their own; what a
//! connection says and is answered is theirs.

use std::io::{self, ErrorKind, Write};
use std::net::SocketAddr;
use std::time::Instant;

use log::debug;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::slots::{Limits, Room, Slots};
use crate::remote_warn;
use crate::server::acceptor::AcceptPause;

/// What a side listener needs of its connections.
pub trait SideConnection {
    fn stream(&mut self) -> &mut TcpStream;
    fn peer(&self) -> SocketAddr;

    /// Whether its waiting is nothing to warn of when it times out (a connection kept alive
    /// after its requests, idle as it may be).
    fn idles_by_right(&self) -> bool {
        false
    }
}

/// The listener and its connections.
pub struct SideListener<T> {
    listener: TcpListener,
    listener_token: Token,
    /// Connections use the tokens `first_token ..= first_token + capacity - 1`.
    first_token: usize,
    pub slots: Slots<T>,
    limits: Limits,
    pause: AcceptPause,
    /// How its log lines start (`metrics: `).
    name: &'static str,
    /// What its connections are registered for.
    interest: Interest,
}

impl<T: SideConnection> SideListener<T> {
    /// Listens on `addr`, registered under `listener_token`; connections get tokens from
    /// `first_token` on, registered for `interest`.
    pub fn bind(
        addr: SocketAddr,
        registry: &Registry,
        (listener_token, first_token): (Token, usize),
        limits: Limits,
        (name, interest): (&'static str, Interest),
    ) -> io::Result<Self> {
        let mut listener = TcpListener::bind(addr)?;
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        let (slots, pause) = (Slots::new(limits), AcceptPause::new(name));
        Ok(Self { listener, listener_token, first_token, slots, limits, pause, name, interest })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether an event with this token is the listener's or one of its connections'.
    pub fn owns(&self, token: Token) -> bool {
        token == self.listener_token || self.key_of(token).is_some()
    }

    /// The slot key of a connection's token (None for the listener's).
    pub fn key_of(&self, token: Token) -> Option<usize> {
        token.0.checked_sub(self.first_token).filter(|&key| key < self.limits.capacity)
    }

    pub fn token_of(&self, key: usize) -> Token {
        Token(self.first_token + key)
    }

    /// When a connection's deadline or the end of a pause in accepting comes.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.slots.next_deadline(), self.pause.wake_at()].into_iter().flatten().min()
    }

    /// Whether accepting was paused and may resume now (the listener's readiness is
    /// edge-triggered: no event will come for connections already waiting).
    pub fn resume_if_due(&mut self, now: Instant) -> bool {
        self.pause.resume_if_due(now)
    }

    /// Accepts the next connection waiting, making room for it (the oldest waiting one is
    /// evicted from a full listener): `Some(Some(key))` once it holds a slot, `Some(None)` if
    /// it was turned away, None when no connection waits.
    pub fn accept_next(
        &mut self,
        registry: &Registry,
        now: Instant,
        make: impl FnOnce(TcpStream, SocketAddr) -> T,
    ) -> Option<Option<usize>> {
        let (mut stream, peer) = self.pause.accept(&self.listener, now)?;
        match self.slots.make_room() {
            Room::Free => {}
            Room::Evicted(mut idle) => {
                remote_warn!("{}{}: no request yet; closed to make room for {peer}", self.name, idle.peer());
                self.release(registry, &mut idle, now);
            }
            Room::Full => {
                remote_warn!(
                    "{}{peer}: {} requests being answered; closing",
                    self.name,
                    self.limits.capacity
                );
                return Some(None);
            }
        }
        let token = self.token_of(self.slots.vacant_key());
        if let Err(e) = registry.register(&mut stream, token, self.interest) {
            debug!("{}{peer}: cannot register: {e}", self.name);
            return Some(None);
        }
        Some(Some(self.slots.admit(make(stream, peer), now)))
    }

    /// Closes the connections past their deadline, saying why.
    pub fn close_expired(&mut self, registry: &Registry, now: Instant) {
        while let Some((mut conn, answering)) = self.slots.pop_expired(now) {
            let (peer, limits) = (conn.peer(), self.limits);
            match answering {
                true => remote_warn!(
                    "{}{peer}: not answered within {:?}; closing",
                    self.name,
                    limits.reply_timeout
                ),
                false => {
                    remote_warn!("{}{peer}: no request within {:?}; closing", self.name, limits.head_timeout)
                }
            }
            self.release(registry, &mut conn, now);
        }
    }

    pub fn close(&mut self, registry: &Registry, key: usize, now: Instant) {
        if let Some(mut conn) = self.slots.remove(key) {
            self.release(registry, &mut conn, now);
        }
    }

    /// Deregisters a connection taken out of its slot (dropping it closes the socket); its
    /// descriptor is free, so a pause for lack of descriptors ends.
    fn release(&mut self, registry: &Registry, conn: &mut T, now: Instant) {
        let _ = registry.deregister(conn.stream());
        self.pause.room_made(now);
    }
}

/// Writes what the socket takes of `reply` from `written` on: true once it is all written,
/// false when the socket is full.
pub fn write_some(stream: &mut TcpStream, reply: &[u8], written: &mut usize) -> io::Result<bool> {
    while *written < reply.len() {
        match stream.write(&reply[*written..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
