//! One client connection as a state machine, generic over its stream.
//!
//! A connection is told what happened to its socket (readable, writable, a timer fired, the
//! server wants it closed) and answers with what that amounted to: a [`Step`] from reading (the
//! handshake completed, a message arrived, the client left, the connection is over) or a
//! [`Flush`] from writing. It never calls back into the server: the server routes what it
//! returns (messages to the chat or the echo, departures to the chat, removals to the slab).
//! Everything about one connection's life lives here:
//!
//! ```text
//!   Head ──upgrade──▶ Open ──close sent──▶ Open (closing) ──reply──▶ Finishing ──▶ gone
//!    │                 │                                              ▲
//!    └──HTTP reply─────┴──client closed, protocol error───────────────┘
//! ```
//!
//! - **Head**: the HTTP request head is read (bounded, with the handshake timeout) and judged by
//!   [`http`]: the page, an error reply, or an upgrade that tungstenite completes.
//! - **Open**: tungstenite reads frames, within a per-turn budget of bytes and frames that the
//!   [`Transport`] enforces (it meters frame headers as the bytes pass, see `meter.rs`); every
//!   frame counts against the rate limit; a message in fragments is charged at least
//!   [`FRAGMENT_MIN_CHARGE`](meter::FRAGMENT_MIN_CHARGE) bytes a fragment against
//!   `--max-message-size` (any number of fragments, bounded by what they cost); and a client
//!   whose queue is over
//!   [`Settings::read_pause_bytes`] is not read from until it drains (read backpressure), so a
//!   client that does not read cannot make the server work for it. Data messages are handed to
//!   the server. A server-initiated close keeps the connection open until the client answers
//!   or `--close-timeout` passes.
//! - **Finishing**: a last reply is written, then the socket closed, after a half-close when the
//!   client may still be sending (so its late bytes cannot turn our close into a reset).
//!
//! The stream is anything [`Stream`]: a mio `TcpStream` in the server, a scripted pipe in the
//! [simulation](crate::sim), which therefore runs exactly this code.
//!
//! This file has the types, the read dispatch and the flush; `handshake.rs` the head phase;
//! `reading.rs` the open phase's reading; `inflate.rs` permessage-deflate's way in;
//! `closing.rs` deadlines and every way a connection ends; `failure.rs` the close codes for
//! protocol errors; `transport.rs` the streams tungstenite runs on. Every idle connection is
//! a slab entry of this type, kept to 128 bytes by three small files: `clock.rs` (deadlines
//! as 4-byte ticks), `peer.rs` (the client's address packed) and `flags.rs` (one byte of
//! flags).

pub mod clock;
mod closing;
mod failure;
mod flags;
mod handshake;
mod inflate;
mod meter;
mod peer;
mod protocol;
mod reading;
mod transport;

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use tungstenite::Utf8Bytes;

pub use clock::{Clock, Tick};
pub use failure::{close_frame, describe_close, Failure};
use flags::{Flags, DIRTY, READING_PAUSED, WRITABLE_INTEREST};
use peer::PeerAddr;
use protocol::Protocol;
pub use transport::{HandshakeStream, Reading, Stream, Transport};

use crate::auth::Identity;
use crate::chat::Bans;
use crate::deflate::Inflater;
use crate::http::Endpoint;
use crate::metrics::Verdict;
use crate::outbox::Flushed;
use crate::rate::RateLimiter;
use crate::settings::Settings;

/// Bytes a finishing connection's input is drained of per turn.
const DISCARD_PER_TURN: usize = 64 * 1024;

/// Why a connection ended or left the chat: usually a fixed text, sometimes a formatted one.
pub type Why = Cow<'static, str>;

/// Which service an open WebSocket is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Chat,
    Echo,
}

/// Whether a new connection fits the connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted against `--max-connections` and `--max-connections-per-ip`.
    Counted,
    /// The server is at `--max-connections`.
    ServerFull,
    /// Its address is at `--max-connections-per-ip`.
    AddressFull,
    /// The server is shutting down: it takes no new client.
    ShuttingDown,
}

/// Where a connection is, as the metrics report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Reading its request head (a TLS handshake included).
    Handshake,
    /// An open WebSocket on this route.
    Open(Route),
    /// Closing, or sending a last reply.
    Closing,
}

/// What reading from a connection produced. After anything but [`Step::Upgraded`],
/// [`Step::Text`] and [`Step::Binary`], the turn is over for this connection.
#[derive(Debug)]
pub enum Step {
    /// The handshake completed: the client is now a WebSocket on this endpoint, signed in as
    /// this identity if it presented a valid token.
    Upgraded(Endpoint, Option<Box<Identity>>),
    /// The token it signed in with has expired: tell it to send a new one.
    Expired,
    /// A text message arrived.
    Text(Utf8Bytes),
    /// A binary message arrived.
    Binary(Bytes),
    /// The client is leaving (it closed, broke the protocol or a limit, or went silent): it
    /// takes no more messages. The connection finishes its close by itself.
    Left(Why),
    /// Nothing more to do now (the socket is drained, or a reply is queued).
    Done,
    /// The turn's budget is spent and input may remain: read again next turn.
    Yield,
    /// The connection is over: remove it now.
    Gone(Why),
    /// `GET /healthz` (`true`: `HEAD`): the hub knows the answer, and gives it with
    /// [`Connection::answer`].
    Health(bool),
}

/// What writing the queue achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued was written.
    Done,
    /// The socket refused some bytes: write again when it is writable.
    Blocked,
    /// The connection is over (its last reply is out, or the socket failed): remove it.
    Gone(Why),
}

/// Where a connection is in its life. Each phase has at most one deadline, kept beside it in
/// the connection (`deadline`).
enum Phase<S> {
    /// Reading the HTTP request head (boxed: an open connection carries no room for it), until
    /// the handshake timeout.
    Head { transport: Transport<S>, head: Box<RequestHead> },
    /// A WebSocket: tungstenite's protocol state `ws` over the transport (parked while idle,
    /// see `protocol.rs`). `closing` is set once the server has sent a close frame; the
    /// deadline is then when the server gives up waiting for the client's reply.
    Open { transport: Transport<S>, ws: Protocol, route: Route, closing: bool },
    /// Sending a last reply (an HTTP error, a close frame), then closing. With `linger`, the
    /// write side is shut first and input discarded until the client closes too (or the
    /// deadline passes). Without it (a completed close handshake: the client has nothing more
    /// to send) the socket is closed as soon as the reply is written.
    Finishing { transport: Transport<S>, linger: bool, write_shut: bool, peer_closed: bool },
    /// Only seen transiently while changing phase.
    Gone,
}

/// The request head as read so far.
#[derive(Default)]
struct RequestHead(Vec<u8>);

/// One client connection. Every idle connection is one of these in the server's slab, so its
/// fields are kept small: ticks, not instants (`clock.rs`), a packed address (`peer.rs`), the
/// handshake's buffer boxed, flags in one byte (`flags.rs`). A test holds it to 128 bytes.
pub struct Connection<S> {
    phase: Phase<S>,
    /// The phase's deadline: the handshake timeout, or the close timeout once closing.
    deadline: Tick,
    /// Last time anything arrived from the client.
    last_heard: Tick,
    /// Earliest pending timer for this connection in the server's timer queue, while the
    /// `TIMER_ARMED` flag is set.
    timer_at: Tick,
    /// `--max-messages-per-sec` bucket (unused when the limit is off).
    rate: RateLimiter,
    /// When the token this connection signed in with expires: boxed, so that a connection
    /// without one (every connection on a server without tokens) pays 8 bytes for it.
    expiry: Option<Box<Expiry>>,
    peer: PeerAddr,
    /// Pending timer, outstanding ping, write interest, flush listing, paused reading.
    flags: Flags,
    /// Whether it may become a WebSocket, or gets 503 if it asks.
    admission: Admission,
    /// Why the server turned this connection away or ended it, for the metrics.
    verdict: Option<Verdict>,
}

/// A signed-in session's end.
#[derive(Debug)]
struct Expiry {
    at: Instant,
    /// The client was told its session expired; it has [`TOKEN_GRACE`] to send `/token`.
    told: bool,
}

/// How long a client whose token expired has to send a new one (`/token JWT`) before it is
/// closed with 1008.
pub const TOKEN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

impl<S: Stream> Connection<S> {
    /// A new connection reading its request head, given until the clock's now plus the handshake
    /// timeout. Unless `admission` counted it, an upgrade is answered 503.
    pub fn new(peer: SocketAddr, socket: S, clock: Clock, settings: &Settings, admission: Admission) -> Self {
        let now = clock.tick();
        Self {
            phase: Phase::Head {
                transport: Transport::new(socket, settings.max_message_size),
                head: Box::default(),
            },
            deadline: now.after(settings.handshake_timeout),
            last_heard: now,
            timer_at: now,
            rate: RateLimiter::default(),
            expiry: None,
            peer: PeerAddr::from(peer),
            flags: Flags::default(),
            admission,
            verdict: None,
        }
    }

    /// Why the server turned this connection away or ended it, if it did and nobody asked
    /// yet: the metrics count each verdict once, as soon as it is reached.
    pub fn take_verdict(&mut self) -> Option<Verdict> {
        self.verdict.take()
    }

    /// Bytes read from the socket in the turn so far (the budget spent).
    pub fn bytes_read_this_turn(&self) -> u64 {
        self.transport().map_or(0, |t| u64::from(t.bytes_read_this_turn()))
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer.get()
    }

    /// Counted against the connection limits.
    pub fn is_counted(&self) -> bool {
        self.admission == Admission::Counted
    }

    /// The service of an open WebSocket.
    pub fn route(&self) -> Option<Route> {
        match &self.phase {
            Phase::Open { route, .. } => Some(*route),
            _ => None,
        }
    }

    /// An open WebSocket holding no protocol state while idle (see `protocol.rs`).
    pub fn is_parked(&self) -> bool {
        matches!(&self.phase, Phase::Open { ws, .. } if ws.is_parked())
    }

    /// A new token's expiry (`/token`): the session goes on until then.
    pub fn extend_session(&mut self, expires_at: Option<Instant>) {
        self.expiry = expires_at.map(|at| Box::new(Expiry { at, told: false }));
    }

    /// Where it is in its life.
    pub fn state(&self) -> ConnState {
        match &self.phase {
            Phase::Head { .. } => ConnState::Handshake,
            Phase::Open { route, closing: false, .. } => ConnState::Open(*route),
            _ => ConnState::Closing,
        }
    }

    /// Still reading its request head.
    pub fn is_handshaking(&self) -> bool {
        matches!(self.phase, Phase::Head { .. })
    }

    /// Whether the server may still queue chat or echo frames for this client.
    pub fn accepts_messages(&self) -> bool {
        matches!(self.phase, Phase::Open { closing: false, .. })
    }

    /// The window the client lets the server compress with, if it negotiated
    /// permessage-deflate (0 if not): which of a broadcast's frames it is sent.
    pub fn deflate_window(&self) -> u8 {
        self.transport().map_or(0, |t| t.deflate_window)
    }

    /// Bytes waiting to be written to the socket.
    pub fn queued(&self) -> usize {
        self.transport().map_or(0, |t| t.outbox.queued())
    }

    /// Whether the queue takes another frame without going over its count of frames.
    pub fn has_room(&self) -> bool {
        self.transport().is_none_or(|t| t.outbox.has_room())
    }

    /// Whether a flush has something to do: bytes are queued, or a finishing connection may
    /// be ready to close.
    pub fn needs_flush(&self) -> bool {
        match &self.phase {
            Phase::Finishing { .. } => true,
            _ => self.transport().is_some_and(|t| t.outbox.queued() > 0 || t.socket.has_pending_output()),
        }
    }

    /// Queues one encoded frame (shared, not copied). The caller has checked
    /// [`accepts_messages`](Self::accepts_messages) and the outbound limit.
    pub fn push(&mut self, frame: Bytes) {
        if let Some(transport) = self.transport_mut() {
            transport.outbox.push(frame);
        }
    }

    /// Lists the connection for this turn's flush; true if it was not listed yet.
    pub fn mark_dirty(&mut self) -> bool {
        !self.flags.set(DIRTY, true)
    }

    /// Taken off the flush list.
    pub fn clear_dirty(&mut self) {
        self.flags.set(DIRTY, false);
    }

    /// Records whether WRITABLE interest is wanted; true if that differs from what is
    /// registered, so the caller must re-register the socket.
    pub fn set_writable_interest(&mut self, wanted: bool) -> bool {
        wanted != self.flags.set(WRITABLE_INTEREST, wanted)
    }

    pub fn wants_writable(&self) -> bool {
        self.flags.has(WRITABLE_INTEREST)
    }

    /// The socket, for (de)registration with the poll.
    pub fn socket_mut(&mut self) -> Option<&mut S> {
        self.transport_mut().map(|t| &mut t.socket)
    }

    /// Gives up the socket (the connection is being removed).
    pub fn into_socket(self) -> Option<S> {
        match self.phase {
            Phase::Head { transport, .. }
            | Phase::Open { transport, .. }
            | Phase::Finishing { transport, .. } => Some(transport.socket),
            Phase::Gone => None,
        }
    }

    // ----- reading -----

    /// A new loop turn: a fresh read budget, and how far to read the socket (see
    /// [`transport::Reading`]).
    pub fn begin_turn(&mut self, reading: transport::Reading) {
        if let Some(transport) = self.transport_mut() {
            transport.begin_turn(reading);
        }
    }

    /// The socket is readable (or input remained from last turn): read until there is
    /// something to report, the socket is drained, or the turn's budget is spent.
    /// A connection that negotiated permessage-deflate inflates through the loop's `inflater`.
    pub fn read(&mut self, settings: &Settings, bans: &Bans, clock: Clock, inflater: &mut Inflater) -> Step {
        match self.phase {
            Phase::Head { .. } => self.read_head(settings, bans, clock),
            Phase::Open { .. } => self.read_messages(settings, clock, inflater),
            Phase::Finishing { .. } => self.discard_input(),
            Phase::Gone => Step::Gone("gone".into()),
        }
    }

    /// Reads and drops whatever a finishing client still sends, until it closes its side; at
    /// most [`DISCARD_PER_TURN`] bytes a turn. (Straight from the socket: the frame meter has
    /// nothing more to judge.)
    fn discard_input(&mut self) -> Step {
        let Phase::Finishing { transport, write_shut, peer_closed, .. } = &mut self.phase else {
            return Step::Done;
        };
        let mut sink = [0u8; 4096];
        for _ in 0..DISCARD_PER_TURN / sink.len() {
            match io::Read::read(&mut transport.socket, &mut sink) {
                Ok(0) => {
                    *peer_closed = true;
                    return if *write_shut { Step::Gone("closed".into()) } else { Step::Done };
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Done,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Gone("closed".into()),
            }
        }
        Step::Yield
    }

    /// After a flush: a connection whose reading was paused is read again once its queue is
    /// back under [`Settings::read_pause_bytes`]. True if the caller should read it now (no
    /// readiness event will come for input that was already waiting).
    pub fn resume_reading(&mut self, settings: &Settings) -> bool {
        let full = self.transport().is_some_and(|t| !t.has_room_for_a_turn());
        if !self.flags.has(READING_PAUSED) || self.queued() > settings.read_pause_bytes || full {
            return false;
        }
        self.flags.set(READING_PAUSED, false);
        true
    }

    // ----- writing -----

    /// Writes the queue to the socket until it is empty or the socket refuses more; a
    /// finishing connection then half-closes or is over.
    pub fn flush(&mut self) -> Flush {
        let finishing = matches!(self.phase, Phase::Finishing { .. });
        let Some(transport) = self.transport_mut() else {
            return Flush::Done;
        };
        match transport.outbox.flush_to(&mut transport.socket) {
            Ok(Flushed::All) => {}
            Ok(Flushed::Partly) => return Flush::Blocked,
            Err(e) => return Flush::Gone(format!("write failed: {e}").into()),
        }
        if finishing {
            transport.socket.end_session();
        }
        match transport.socket.flush_pending() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flush::Blocked,
            Err(e) => return Flush::Gone(format!("write failed: {e}").into()),
        }
        if let Phase::Finishing { transport, linger, write_shut, peer_closed, .. } = &mut self.phase {
            if !*linger {
                return Flush::Gone("closed".into());
            }
            if !*write_shut {
                *write_shut = true;
                // Half-close: the client sees our last bytes then EOF, and we keep reading so
                // its late data does not turn our close into a reset.
                let _ = transport.socket.shutdown_write();
            }
            if *peer_closed {
                return Flush::Gone("closed".into());
            }
        }
        Flush::Done
    }

    fn transport(&self) -> Option<&Transport<S>> {
        match &self.phase {
            Phase::Head { transport, .. }
            | Phase::Open { transport, .. }
            | Phase::Finishing { transport, .. } => Some(transport),
            Phase::Gone => None,
        }
    }

    fn transport_mut(&mut self) -> Option<&mut Transport<S>> {
        match &mut self.phase {
            Phase::Head { transport, .. }
            | Phase::Open { transport, .. }
            | Phase::Finishing { transport, .. } => Some(transport),
            Phase::Gone => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream the size of a `mio::net::TcpStream` in a release build (a file descriptor).
    struct Descriptor(#[allow(dead_code)] i32);

    impl io::Read for Descriptor {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
    }

    impl io::Write for Descriptor {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for Descriptor {
        fn shutdown_write(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Every idle connection is one slab entry of this size: the idle chat connection's
    /// budget (docs/BENCHMARKS.md) counts on it.
    #[test]
    fn a_connection_over_a_socket_is_128_bytes() {
        assert_eq!(std::mem::size_of::<Transport<Descriptor>>(), 56);
        assert_eq!(std::mem::size_of::<Connection<Descriptor>>(), 128);
        // The slab's vacant entries use a niche, as `Option` does: no tag beside it.
        assert_eq!(std::mem::size_of::<Option<Connection<Descriptor>>>(), 128);
    }
}
