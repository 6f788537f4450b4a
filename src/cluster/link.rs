//! One connection to Redis inside the server's poll: a non-blocking socket under its own
//! token, an outbox of encoded commands written once per loop turn (so a turn's commands leave
//! pipelined, in one write), and a [`Decoder`] that replies are decoded by as they are read.
//!
//! The socket is whatever a [`Dialer`] makes: in the server, a TCP socket registered in the
//! poll (`tcp.rs`); in the simulation, a connection to a simulated Redis on a virtual clock.
//! Everything above the socket (the outbox, the budgets, the decoder, and the whole broker) is
//! the same code in both.
//!
//! Both directions are bounded: a Redis that stops reading, or that sends a reply past the
//! decoder's [`Limits`], costs the link (it is dropped and made again by the broker), never the
//! loop's memory or time. Each read is capped like a client's, at [`READ_BUDGET`] bytes and
//! [`DECODE_BUDGET`] frames, and the decoder looks at each byte once (it keeps its place in an
//! unfinished reply), so a link's share of a turn is bounded whether Redis sends a flood of
//! published messages or one endless reply; what is left is read next turn.

use std::io::{self, Read, Write};

use bytes::{Buf, Bytes, BytesMut};
use mio::Token;

use super::resp::{self, Decoder, Frame, Limits};

/// Most bytes of commands waiting for a Redis that does not read: past it, the link is dropped.
pub const MAX_OUTBOX: usize = 64 << 20;
/// Bytes read (and decoded) from one link per loop turn, at most.
pub const READ_BUDGET: usize = 1 << 20;
/// Frames decoded from one link per read, at most; bytes read past them wait, undecoded, for
/// the next turn. A megabyte of the smallest frames is 350,000 of them, some 10 ms to decode
/// and build; 32,768 take 1 to 3 ms (release build), so a read costs about that whatever
/// Redis sends, and published messages (4 frames each) still go 8,192 a read.
pub const DECODE_BUDGET: usize = 32 << 10;
/// Bytes read per `read` call: sixteen reads fill the budget.
const CHUNK: usize = 64 << 10;
/// Reads are cut from buffers this large, each used again once nothing cut from it is alive.
const ARENA: usize = 1 << 20;

/// What a link needs of its connection: bytes both ways without blocking (`WouldBlock` when
/// there are none, or no room), and readiness under the link's token.
pub trait Socket: Read + Write {
    /// Whether the connect has finished: `Ok(false)` while it is under way (a spurious
    /// WRITABLE), an error if it failed.
    fn finish_connect(&mut self) -> io::Result<bool>;
    /// Asks to hear of WRITABLE (a blocked write, a connect under way) or stops asking;
    /// READABLE is always wanted. Dropping the socket stops both.
    fn want_writable(&mut self, wanted: bool) -> io::Result<()>;
}

/// Makes connections to Redis, each started without waiting and told about under `token`.
pub trait Dialer {
    fn dial(&mut self, token: Token) -> io::Result<Box<dyn Socket>>;

    /// A new name for this process in Redis, one per link: random (a simulation numbers them,
    /// so that a seed replays the same run).
    fn link_name(&mut self) -> String {
        crate::chat::history::new_epoch().to_string()
    }
}

/// One connection to Redis.
pub struct Link {
    token: Token,
    socket: Option<Box<dyn Socket>>,
    /// The socket is connected (the first WRITABLE event came, without an error).
    connected: bool,
    outbox: BytesMut,
    /// Replies read but unfinished stay here, half decoded, never as bytes to parse again.
    decoder: Decoder,
    /// Bytes read but not yet decoded: the last read ran out of [`DECODE_BUDGET`].
    undecoded: Bytes,
    /// Where reads go: replies' strings are slices of it (no copy, no allocation per string),
    /// and replies are dropped within the turn, so the same memory serves read after read.
    arena: BytesMut,
    /// Whether WRITABLE interest is registered (while a write is blocked, or connecting).
    wants_writable: bool,
    /// The last read stopped at a budget with bytes still waiting (in the socket, or undecoded).
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
            undecoded: Bytes::new(),
            arena: BytesMut::new(),
            wants_writable: false,
            unfinished: false,
        }
    }

    pub fn token(&self) -> Token {
        self.token
    }

    /// Starts connecting (without waiting); what is queued meanwhile goes once connected.
    pub fn connect(&mut self, dialer: &mut dyn Dialer) -> io::Result<()> {
        self.close();
        // A new socket asks for WRITABLE: its first tells that the connect finished.
        self.socket = Some(dialer.dial(self.token)?);
        self.wants_writable = true;
        Ok(())
    }

    /// Drops the connection and whatever was queued or half-read.
    pub fn close(&mut self) {
        self.socket = None;
        self.connected = false;
        self.outbox.clear();
        self.decoder.reset();
        self.undecoded = Bytes::new();
        self.wants_writable = false;
        self.unfinished = false;
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn is_open(&self) -> bool {
        self.socket.is_some()
    }

    /// Bytes of commands queued and not yet written.
    pub fn queued(&self) -> usize {
        self.outbox.len()
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
        let Some(socket) = &mut self.socket else { return Ok(()) };
        self.connected = socket.finish_connect()?;
        Ok(())
    }

    /// Writes what is queued; keeps WRITABLE interest while the socket refuses bytes.
    pub fn flush(&mut self) -> io::Result<()> {
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
            socket.want_writable(blocked)?;
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
        let mut budget = DECODE_BUDGET;
        // Last read's leftovers first: nothing more is read until they are decoded.
        if !self.undecoded.is_empty() {
            let used = self.decoder.feed(&self.undecoded, frames, &mut budget).map_err(io::Error::other)?;
            self.undecoded.advance(used);
            if !self.undecoded.is_empty() {
                self.unfinished = true;
                return Ok(());
            }
        }
        let mut read = 0;
        loop {
            if read >= READ_BUDGET {
                // Edge-triggered readiness will not say again that bytes are waiting.
                self.unfinished = true;
                break;
            }
            let want = CHUNK.min(READ_BUDGET - read);
            if self.arena.len() < want {
                // Takes the arena's whole buffer back if nothing cut from it is alive, else a
                // new one (and the old is freed with the last slice of it). Zeroed once here,
                // not before every read: a read is a few hundred bytes, its buffer 64 KiB.
                self.arena.clear();
                self.arena.reserve(ARENA);
                self.arena.resize(self.arena.capacity(), 0);
            }
            let result = socket.read(&mut self.arena[..want]);
            match result {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "Redis closed the connection"))
                }
                Ok(n) => {
                    read += n;
                    // What was read is cut off; the rest of the arena stays for the next read.
                    let chunk = self.arena.split_to(n).freeze();
                    let used = self.decoder.feed(&chunk, frames, &mut budget).map_err(io::Error::other)?;
                    if used < chunk.len() {
                        self.undecoded = chunk.slice(used..);
                        self.unfinished = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    use mio::{Events, Poll};

    #[test]
    fn a_read_decodes_at_most_its_budget_and_the_next_resumes_where_it_stopped() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut poll = Poll::new().unwrap();
        let mut link = Link::new(Token(0));
        let mut dialer =
            super::super::tcp::TcpDialer::new(listener.local_addr().unwrap(), poll.registry()).unwrap();
        link.connect(&mut dialer).unwrap();
        let (mut redis, _) = listener.accept().unwrap();
        // Three budgets' worth of the smallest replies, then one reply of 3 MiB (three read
        // budgets) split across reads, then one more.
        const SMALL: usize = 3 * DECODE_BUDGET + 5;
        let writer = std::thread::spawn(move || {
            redis.write_all(&b":7\r\n".repeat(SMALL)).unwrap();
            redis.write_all(format!("${}\r\n", 3 << 20).as_bytes()).unwrap();
            redis.write_all(&vec![b'x'; 3 << 20]).unwrap();
            redis.write_all(b"\r\n+OK\r\n").unwrap();
            redis
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut events = Events::with_capacity(8);
        let (mut frames, mut reads) = (Vec::new(), 0);
        while frames.len() < SMALL + 2 {
            assert!(Instant::now() < deadline, "{} frames so far", frames.len());
            if !link.has_unfinished_read() {
                // Edge-triggered: wait for more bytes only when the last read drained the socket.
                poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
                link.on_writable().unwrap();
            }
            let before = frames.len();
            link.read(&mut frames).unwrap();
            assert!(frames.len() - before <= DECODE_BUDGET, "a read decoded past its budget");
            reads += 1;
        }
        // At least four reads for the small replies' frames, and two more for the big reply's
        // bytes past what the fourth read took (seen: exactly six, when the writer was ahead).
        assert!(reads >= 3 + 3, "{reads} reads");
        assert!(frames[..SMALL].iter().all(|f| *f == Frame::Integer(7)));
        assert!(
            matches!(&frames[SMALL], Frame::BulkString(b) if b.len() == 3 << 20 && b.iter().all(|&c| c == b'x'))
        );
        assert_eq!(frames[SMALL + 1], Frame::SimpleString(bytes::Bytes::from_static(b"OK")));
        drop(writer.join().unwrap());
    }
}
