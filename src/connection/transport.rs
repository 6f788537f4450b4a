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

use crate::outbox::Outbox;

/// A non-blocking byte stream a connection can run on: a TCP socket in the server, a scripted
/// pipe in the simulation. Reads and writes report `WouldBlock` when they cannot proceed.
pub trait Stream: Read + Write {
    /// Closes the sending half: the client sees the last bytes, then EOF, while the server
    /// can still read (and discard) what the client sends.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Stream for mio::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// The stream under a connection's WebSocket: socket reads, queued writes.
#[derive(Debug)]
pub struct Transport<S> {
    pub socket: S,
    pub outbox: Outbox,
    /// Bytes read from the socket so far; compared to notice any sign of life.
    pub received: u64,
}

impl<S> Transport<S> {
    pub fn new(socket: S) -> Self {
        Self { socket, outbox: Outbox::new(), received: 0 }
    }
}

impl<S: Read> Read for Transport<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        self.received += n as u64;
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
