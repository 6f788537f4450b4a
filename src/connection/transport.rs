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

    /// A read that returns fewer bytes than asked has emptied the socket, and the poll reports
    /// (edge-triggered) when more arrives: reading again before that would only return
    /// `WouldBlock`, a system call per message for nothing. True of a TCP socket; not of a
    /// stream with a buffer of its own (TLS holds decrypted bytes the socket no longer shows).
    const SHORT_READ_DRAINS: bool = false;
}

impl Stream for mio::net::TcpStream {
    const SHORT_READ_DRAINS: bool = true;

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// How far a connection's socket may be read in this turn, whatever its budget (a spent
/// budget holds the reading back in every one of these: `Transport::budget_spent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Until it would block.
    Open,
    /// Until a read comes back short (then [`Reading::Drained`]): the loop is light, and the
    /// next readiness event costs less than a read that finds the socket empty.
    UntilShort,
    /// A read came back short: the socket is empty until the next readiness event (see
    /// [`Stream::SHORT_READ_DRAINS`]), which starts a turn of reading afresh.
    Drained,
    /// The client closed its side: read on to EOF whatever the reads return, since no event
    /// will come for an end that was already reported.
    ToEnd,
}

/// The stream under a connection's WebSocket: socket reads within the turn's budget, metered
/// frame by frame; queued writes.
#[derive(Debug)]
pub struct Transport<S> {
    pub socket: S,
    pub outbox: Outbox,
    /// Something arrived since the flag was last cleared: a sign of life.
    pub heard: bool,
    /// How far the socket may be read now.
    pub reading: Reading,
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
            reading: Reading::Open,
            turn_frames: 0,
            budget: BUDGET,
            wire: 0,
            meter: FrameMeter::default(),
            max_message: u32::try_from(max_message).unwrap_or(u32::MAX - 1),
            deflate_window: 0,
        }
    }

    /// A new loop turn: a fresh budget, less what is still owed, and the socket read as
    /// `reading` says (`Open`, `UntilShort` or `ToEnd`); once to its end, always to its end.
    pub fn begin_turn(&mut self, reading: Reading) {
        self.budget = self.budget.min(0).saturating_add(BUDGET);
        self.wire = 0;
        self.turn_frames = 0;
        if self.reading != Reading::ToEnd {
            self.reading = reading;
        }
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

impl<S: Stream> Read for Transport<S> {
    /// Reads from the socket, but answers `WouldBlock` once the turn's bytes or frames are
    /// spent (checked first: a `WouldBlock` with the budget spent is that one), so one
    /// client's input cannot fill a whole loop turn, and without a system call once a short
    /// read emptied the socket.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // A fragmented message over the limit does not stop the reads: the connection fails it
        // as soon as this read is over (or, closing already, keeps reading for the close reply;
        // refusing every read then held it in place until its close timeout).
        if self.budget_spent() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.reading == Reading::Drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let cap = buf.len().min(self.budget.unsigned_abs() as usize);
        let n = self.socket.read(&mut buf[..cap])?;
        if S::SHORT_READ_DRAINS && n > 0 && n < cap && self.reading == Reading::UntilShort {
            self.reading = Reading::Drained;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that has `left` bytes and counts the reads asked of it.
    struct Socket {
        left: usize,
        reads: usize,
    }

    impl Read for Socket {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let n = buf.len().min(self.left);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.left -= n;
            Ok(n)
        }
    }

    impl Write for Socket {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for Socket {
        fn shutdown_write(&mut self) -> io::Result<()> {
            Ok(())
        }
        const SHORT_READ_DRAINS: bool = true;
    }

    /// Reads (a turn begun with `reading`) until `WouldBlock`: the socket's reads asked.
    fn socket_reads(reading: Reading) -> usize {
        let mut transport = Transport::new(Socket { left: 100, reads: 0 }, 1 << 20);
        transport.begin_turn(reading);
        let mut buf = [0; 4096];
        while transport.read(&mut buf).is_ok() {}
        transport.socket.reads
    }

    #[test]
    fn a_light_turn_stops_at_a_short_read_and_a_busy_one_reads_until_it_would_block() {
        assert_eq!(socket_reads(Reading::UntilShort), 1, "the short read emptied the socket");
        assert_eq!(socket_reads(Reading::Open), 2, "read again, to find it empty");
        assert_eq!(socket_reads(Reading::ToEnd), 2, "read to the end");
    }

    #[test]
    fn once_the_client_closed_its_side_every_turn_reads_to_the_end() {
        let mut transport = Transport::new(Socket { left: 0, reads: 0 }, 1 << 20);
        transport.begin_turn(Reading::ToEnd);
        transport.begin_turn(Reading::UntilShort);
        assert_eq!(transport.reading, Reading::ToEnd);
    }

    #[test]
    fn a_spent_budget_holds_the_reading_back_whatever_the_turn_reads_to() {
        for reading in [Reading::Open, Reading::UntilShort, Reading::ToEnd] {
            let mut transport = Transport::new(Socket { left: 1 << 20, reads: 0 }, 1 << 20);
            transport.begin_turn(reading);
            let mut buf = [0; 4096];
            while transport.read(&mut buf).is_ok() {}
            assert!(transport.budget_spent(), "{reading:?}: the rest waits for the next turn");
            assert!(transport.socket.left > 0);
            transport.begin_turn(reading);
            assert!(!transport.budget_spent());
        }
    }
}
