//! One TCP connection to Redis inside the server's poll: a non-blocking mio socket under its
//! own token, an outbox of encoded commands written once per loop turn (so a turn's commands
//! leave pipelined, in one write), and a [`Decoder`] that replies are decoded by as they are
//! read.
//!
//! Both directions are bounded: a Redis that stops reading, or that sends a reply past the
//! decoder's [`Limits`], costs the link (it is dropped and made again by the broker), never the
//! loop's memory or time. Reads are capped per turn like a client's, and the decoder looks at
//! each byte once (it keeps its place in an unfinished reply), so a link's share of a turn is
//! at most [`READ_BUDGET`] bytes read and decoded, whether a flood of published messages or one
//! endless reply; what is left is read next turn.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use bytes::BytesMut;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::resp::{self, Decoder, Frame, Limits};

/// Most bytes of commands waiting for a Redis that does not read: past it, the link is dropped.
pub const MAX_OUTBOX: usize = 64 << 20;
/// Bytes read (and decoded) from one link per loop turn, at most.
pub const READ_BUDGET: usize = 1 << 20;
/// Bytes read per `read` call: sixteen reads fill the budget.
const CHUNK: usize = 64 << 10;

/// One connection to Redis.
pub struct Link {
    token: Token,
    socket: Option<TcpStream>,
    /// The socket is connected (the first WRITABLE event came, without an error).
    connected: bool,
    outbox: BytesMut,
    /// Replies read but unfinished stay here, half decoded, never as bytes to parse again.
    decoder: Decoder,
    /// Whether WRITABLE interest is registered (while a write is blocked, or connecting).
    wants_writable: bool,
    /// The last read stopped at the turn's budget with bytes still waiting.
    unfinished: bool,
}

impl Link {
    /// A link whose replies are bounded by the default [`Limits`].
    pub fn new(token: Token) -> Self {
        Self::with_limits(token, Limits::default())
    }

    /// A link whose replies are bounded by `limits` (see [`Limits::for_flags`]).
    pub fn with_limits(token: Token, limits: Limits) -> Self {
        Self {
            token,
            socket: None,
            connected: false,
            outbox: BytesMut::new(),
            decoder: Decoder::new(limits),
            wants_writable: false,
            unfinished: false,
        }
    }

    pub fn token(&self) -> Token {
        self.token
    }

    /// Starts connecting (without waiting); what is queued meanwhile goes once connected.
    pub fn connect(&mut self, addr: SocketAddr, registry: &Registry) -> io::Result<()> {
        self.close(registry);
        let mut socket = TcpStream::connect(addr)?;
        registry.register(&mut socket, self.token, Interest::READABLE | Interest::WRITABLE)?;
        // Commands are small and latency matters: no Nagle delay.
        let _ = socket.set_nodelay(true);
        self.socket = Some(socket);
        self.wants_writable = true;
        Ok(())
    }

    /// Drops the connection and whatever was queued or half-read.
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut socket) = self.socket.take() {
            let _ = registry.deregister(&mut socket);
        }
        self.connected = false;
        self.outbox.clear();
        self.decoder.reset();
        self.wants_writable = false;
        self.unfinished = false;
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn is_open(&self) -> bool {
        self.socket.is_some()
    }

    /// The last read was cut short by the budget: read again next turn.
    pub fn has_unfinished_read(&self) -> bool {
        self.unfinished
    }

    /// Queues one command; it is written at the end of the turn.
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<()> {
        resp::encode_command(&mut self.outbox, args);
        if self.outbox.len() > MAX_OUTBOX {
            return Err(io::Error::other(format!("over {} MiB of commands unwritten", MAX_OUTBOX >> 20)));
        }
        Ok(())
    }

    /// The socket became writable: a connect finished (or failed).
    pub fn on_writable(&mut self) -> io::Result<()> {
        if self.connected {
            return Ok(());
        }
        let Some(socket) = &self.socket else { return Ok(()) };
        if let Some(e) = socket.take_error()? {
            return Err(e);
        }
        match socket.peer_addr() {
            Ok(_) => {
                self.connected = true;
                Ok(())
            }
            // Not yet: spurious wakeup while connecting.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes what is queued; keeps WRITABLE interest while the socket refuses bytes.
    pub fn flush(&mut self, registry: &Registry) -> io::Result<()> {
        let Some(socket) = &mut self.socket else { return Ok(()) };
        if !self.connected {
            return Ok(());
        }
        while !self.outbox.is_empty() {
            match socket.write(&self.outbox) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let _ = self.outbox.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let blocked = !self.outbox.is_empty();
        if blocked != self.wants_writable {
            let interest = if blocked { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            registry.reregister(socket, self.token, interest)?;
            self.wants_writable = blocked;
        }
        Ok(())
    }

    /// Reads what has arrived (up to the turn's budget) and decodes every whole reply into
    /// `frames`. An error, a reply past the bounds, or Redis closing the connection ends the
    /// link (replies completed before it are in `frames`).
    pub fn read(&mut self, frames: &mut Vec<Frame>) -> io::Result<()> {
        let Some(socket) = &mut self.socket else { return Ok(()) };
        self.unfinished = false;
        let mut read = 0;
        let mut chunk = [0u8; CHUNK];
        loop {
            if read >= READ_BUDGET {
                // Edge-triggered readiness will not say again that bytes are waiting.
                self.unfinished = true;
                break;
            }
            let want = CHUNK.min(READ_BUDGET - read);
            match socket.read(&mut chunk[..want]) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "Redis closed the connection"))
                }
                Ok(n) => {
                    read += n;
                    self.decoder.feed(&chunk[..n], frames).map_err(io::Error::other)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
