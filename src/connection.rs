//! One client connection: its socket, its outgoing queue, and where it is in its life
//! (reading the HTTP head, open as a WebSocket, or finishing).
//!
//! [`Transport`] is the stream tungstenite is given. Its reads come from the socket; its writes
//! never touch the socket but append to the connection's [`Outbox`], so tungstenite's own frames
//! (pongs, close replies) and the server's broadcast frames share one queue and keep their
//! order. The handshake response goes into the same queue (see [`HandshakeStream`]).
//! Only the event loop writes the queue to the socket, when the socket is writable.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use mio::net::TcpStream;
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::WebSocket;

use crate::outbox::Outbox;
use crate::rate::RateLimiter;

/// The stream under a connection's WebSocket.
#[derive(Debug)]
pub struct Transport {
    pub socket: TcpStream,
    pub outbox: Outbox,
    /// Bytes read from the socket so far; the loop compares it to notice any sign of life.
    pub received: u64,
}

impl Transport {
    pub fn new(socket: TcpStream) -> Self {
        Self { socket, outbox: Outbox::new(), received: 0 }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        self.received += n as u64;
        Ok(n)
    }
}

impl Write for Transport {
    /// Queues the bytes; never blocks and never fails. These are tungstenite's own writes:
    /// small control frames (pongs, close frames).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbox.push(Bytes::copy_from_slice(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The stream tungstenite's server handshake runs on: the request head the server has already
/// read, and a buffer for the response. The head is complete, so the handshake never blocks;
/// the response is then queued in the connection's outbox.
pub struct HandshakeStream<'a> {
    pub head: &'a [u8],
    pub response: Vec<u8>,
}

impl Read for HandshakeStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.head.read(buf)
    }
}

impl Write for HandshakeStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.response.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Which service an open WebSocket is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Chat,
    Echo,
}

/// Where a connection is in its life.
// Open is by far the largest variant and also by far the most common: boxing it would cost
// every idle connection an extra allocation, which is what the slab layout is avoiding.
#[allow(clippy::large_enum_variant)]
pub enum Phase {
    /// Reading the HTTP request head, until `deadline` (the handshake timeout).
    Head { transport: Transport, head: Vec<u8>, deadline: Instant },
    /// A WebSocket. `closing` is set once the server has sent a close frame, and is when the
    /// server gives up waiting for the client's reply.
    Open { ws: WebSocket<Transport>, route: Route, closing: Option<Instant> },
    /// Sending a last reply (an HTTP error, a close frame), then closing. With `linger`, the
    /// write side is shut first and input discarded until the client closes too (or `deadline`
    /// passes), so late client data cannot turn the close into a reset that destroys the reply.
    /// Without it (a completed close handshake: the client has nothing more to send) the
    /// socket is closed as soon as the reply is written.
    Finishing { transport: Transport, deadline: Instant, linger: bool, write_shut: bool, peer_closed: bool },
    /// Gone; about to be removed. Only seen transiently while changing phase.
    Gone,
}

/// Per-connection state kept in the server's slab.
pub struct Connection {
    /// Distinguishes this connection from later ones that reuse its slab key.
    pub serial: u64,
    pub peer: SocketAddr,
    pub phase: Phase,
    /// Last time anything arrived from the client.
    pub last_heard: Instant,
    /// A keep-alive ping is outstanding.
    pub ping_sent: bool,
    /// Earliest pending timer for this connection, if any.
    pub timer_at: Option<Instant>,
    /// WRITABLE interest is registered (only while the outbox has bytes the socket refused).
    pub writable_interest: bool,
    /// Listed for a flush at the end of this poll iteration.
    pub dirty: bool,
    /// Counted against `--max-connections` (rejected over-limit connections are not).
    pub counted: bool,
    /// `--max-messages-per-sec` bucket (unused when the limit is off).
    pub rate: RateLimiter,
}

impl Connection {
    pub fn new(
        serial: u64,
        peer: SocketAddr,
        socket: TcpStream,
        now: Instant,
        deadline: Instant,
        counted: bool,
    ) -> Self {
        Self {
            serial,
            peer,
            phase: Phase::Head { transport: Transport::new(socket), head: Vec::new(), deadline },
            last_heard: now,
            ping_sent: false,
            timer_at: None,
            writable_interest: false,
            dirty: false,
            counted,
            rate: RateLimiter::default(),
        }
    }

    /// The transport, in every phase that still has one.
    pub fn transport_mut(&mut self) -> Option<&mut Transport> {
        match &mut self.phase {
            Phase::Head { transport, .. } | Phase::Finishing { transport, .. } => Some(transport),
            Phase::Open { ws, .. } => Some(ws.get_mut()),
            Phase::Gone => None,
        }
    }

    /// Moves to [`Phase::Finishing`], keeping the socket and whatever is queued for it.
    pub fn finish(&mut self, deadline: Instant, linger: bool) {
        let transport = match std::mem::replace(&mut self.phase, Phase::Gone) {
            Phase::Head { transport, .. } => transport,
            Phase::Open { ws, .. } => ws.into_inner(),
            other => {
                self.phase = other;
                return;
            }
        };
        self.phase = Phase::Finishing { transport, deadline, linger, write_shut: false, peer_closed: false };
    }

    /// Whether the server may still queue chat or echo frames for this client.
    pub fn accepts_messages(&self) -> bool {
        matches!(self.phase, Phase::Open { closing: None, .. })
    }
}

/// What a read error from tungstenite means for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The client broke the protocol or a limit: send this close code and reason, then close.
    Close(CloseCode, String),
    /// The close handshake is complete.
    Closed,
    /// The connection is gone (reset, dropped without a close); nothing can be sent.
    Dropped(String),
}

impl Failure {
    /// Maps an error to the close code RFC 6455 asks for (7.4.1).
    pub fn of(error: WsError) -> Self {
        match error {
            WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                Self::Close(CloseCode::Size, format!("message too big: {size} bytes, limit {max_size}"))
            }
            WsError::Capacity(e) => Self::Close(CloseCode::Size, e.to_string()),
            WsError::Utf8(_) => Self::Close(CloseCode::Invalid, "invalid UTF-8 in text message".to_string()),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                Self::Dropped("connection dropped without a close".to_string())
            }
            WsError::Protocol(e) => Self::Close(CloseCode::Protocol, e.to_string()),
            WsError::Io(e) => Self::Dropped(format!("connection lost: {e}")),
            WsError::ConnectionClosed | WsError::AlreadyClosed => Self::Closed,
            other => Self::Close(CloseCode::Error, format!("internal error: {other}")),
        }
    }
}
