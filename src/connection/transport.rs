//! The streams tungstenite is given, and what a connection needs of its socket.
//!
//! [`Transport`] is the stream under an open WebSocket. Its reads come from the socket; its
//! writes never touch the socket but append to the connection's [`Outbox`], so tungstenite's
//! own frames (pongs, close replies) and the server's broadcast frames share one queue and keep
//! their order. Only [`Connection::flush`](super::Connection::flush) writes that queue to the
//! socket. [`HandshakeStream`] is what tungstenite's server handshake runs on: the request head
//! already read, and a buffer for the response, which is then queued like everything else.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use bytes::Bytes;

use super::meter::FrameMeter;
use crate::outbox::Outbox;

/// Bytes one connection may read in one loop turn: four messages of the default largest size.
pub const BYTES_PER_TURN: u32 = 256 * 1024;
/// Frames (data, continuation and control alike) one connection may send in one loop turn.
pub const FRAMES_PER_TURN: u32 = 64;
// The transport counts a turn's frames in a byte.
const _: () = assert!(FRAMES_PER_TURN < u8::MAX as u32);
/// [`BYTES_PER_TURN`] as the signed budget counts it.
const BUDGET: i32 = BYTES_PER_TURN as i32;

/// A non-blocking byte stream a connection can run on: a TCP socket in the server, a scripted
/// pipe in the simulation. Reads and writes report `WouldBlock` when they cannot proceed.
///
/// A stream with a layer of its own under the connection's queue (TLS) may hold bytes the
/// socket has not taken yet; the three provided methods let the connection see and drain them.
/// A plain socket holds nothing and keeps the defaults.
pub trait Stream: Read + Write {
    /// Closes the sending half: the client sees the last bytes, then EOF, while the server
    /// can still read (and discard) what the client sends.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Bytes are waiting inside the stream for the socket to take them.
    fn has_pending_output(&self) -> bool {
        false
    }

    /// Writes what waits inside the stream: `Ok` once none is left, `WouldBlock` if the socket
    /// refused.
    fn flush_pending(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The session ends cleanly (TLS sends `close_notify`); the socket closes after it.
    fn end_session(&mut self) {}
}

impl Stream for mio::net::TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// The stream under a connection's WebSocket: socket reads within the turn's budget, metered
/// frame by frame; queued writes.
#[derive(Debug)]
pub struct Transport<S> {
    pub socket: S,
    pub outbox: Outbox,
    /// Something arrived since the flag was last cleared: a sign of life.
    pub heard: bool,
    /// A read was refused because the turn's budget is spent.
    pub held_back: bool,
    // Kept small: every idle connection carries these. (Frames are counted only up to
    // FRAMES_PER_TURN, so a byte holds them, and leaves room for `deflate_window`.)
    turn_frames: u8,
    /// What is left of the turn's read budget. Below zero when a message inflated to more than
    /// was left (see `inflate.rs`): a debt the next turns pay before anything more is read.
    budget: i32,
    /// Bytes read from the socket this turn, for the metrics (inflated bytes are not).
    wire: u32,
    meter: FrameMeter,
    /// `--max-message-size`, saturated to `u32` (it fits in the struct's padding).
    max_message: u32,
    /// The largest window the client lets the server compress with, if it negotiated
    /// permessage-deflate (0 if not): in the struct's padding too.
    pub deflate_window: u8,
}

impl<S> Transport<S> {
    pub fn new(socket: S, max_message: usize) -> Self {
        Self {
            socket,
            outbox: Outbox::new(),
            heard: false,
            held_back: false,
            turn_frames: 0,
            budget: BUDGET,
            wire: 0,
            meter: FrameMeter::default(),
            max_message: u32::try_from(max_message).unwrap_or(u32::MAX - 1),
            deflate_window: 0,
        }
    }

    /// A new loop turn: a fresh budget, less what is still owed.
    pub fn begin_turn(&mut self) {
        self.budget = self.budget.min(0).saturating_add(BUDGET);
        self.wire = 0;
        self.turn_frames = 0;
        self.held_back = false;
    }

    /// Whether the queue has room for an answer to every frame one turn may read.
    pub fn has_room_for_a_turn(&self) -> bool {
        self.outbox.has_room_for(FRAMES_PER_TURN as usize)
    }

    /// `--max-message-size`.
    pub fn max_message(&self) -> usize {
        self.max_message as usize
    }

    /// The turn's budget is spent: nothing more is read until the next.
    pub fn budget_spent(&self) -> bool {
        self.budget <= 0 || u32::from(self.turn_frames) >= FRAMES_PER_TURN
    }

    /// Bytes read from the socket since the turn began.
    pub fn bytes_read_this_turn(&self) -> u32 {
        self.wire
    }

    /// Counts bytes read around the budget (the request head, read before the WebSocket).
    pub fn note_read(&mut self, n: usize) {
        self.wire = self.wire.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        self.charge(n);
    }

    /// Charges bytes inflated from a compressed message to the budget, as if they had been
    /// read: past what is left, the next turns pay for them.
    pub fn charge(&mut self, n: usize) {
        self.budget = self.budget.saturating_sub(i32::try_from(n).unwrap_or(i32::MAX));
    }

    /// Frames that arrived since the last call (for the rate limiter).
    pub fn take_frames(&mut self) -> u32 {
        self.meter.take_frames()
    }

    /// A fragmented message cost more than `--max-message-size` (see `meter.rs`).
    pub fn fragments_over_limit(&self) -> bool {
        self.meter.over_limit()
    }

    /// Every byte read so far belongs to a whole frame, and no fragmented message is under way.
    pub fn between_messages(&self) -> bool {
        self.meter.between_messages()
    }
}

impl<S: Read> Read for Transport<S> {
    /// Reads from the socket, but answers `WouldBlock` (setting `held_back`) once the turn's
    /// bytes or frames are spent, so one client's input cannot fill a whole loop turn.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // A fragmented message over the limit does not stop the reads: the connection fails it
        // as soon as this read is over (or, closing already, keeps reading for the close reply;
        // refusing every read then held it in place until its close timeout).
        if self.budget_spent() {
            self.held_back = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let cap = buf.len().min(self.budget.unsigned_abs() as usize);
        let n = self.socket.read(&mut buf[..cap])?;
        self.heard |= n > 0;
        self.budget -= n as i32;
        self.wire = self.wire.saturating_add(n as u32);
        let seen = self.meter.feed(&buf[..n], self.max_message);
        self.turn_frames = self.turn_frames.saturating_add(u8::try_from(seen).unwrap_or(u8::MAX));
        Ok(n)
    }
}

impl<S> Write for Transport<S> {
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

/// The request head the server has already read, and a buffer for tungstenite's response. The
/// head is complete, so the handshake never blocks.
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
