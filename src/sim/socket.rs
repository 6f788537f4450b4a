//! The scripted socket the simulation runs connections on: a pipe whose two ends are the
//! server's [`SimSocket`] and the test's [`Pipe`] handle.
//!
//! Like a non-blocking TCP socket, a read returns what has arrived (at most `piece` bytes at a
//! time, so the server meets messages split anywhere) and then `WouldBlock`, or EOF once the
//! client has closed its side; a write takes what fits in the client's receive window and
//! refuses the rest with `WouldBlock`. A window of `None` accepts everything (a client reading
//! as fast as it can); `Some(0)` accepts nothing (a client that never reads).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::rc::Rc;

use crate::connection::Stream;

/// Both directions of one simulated connection.
#[derive(Debug, Default)]
pub struct Pipe {
    /// Bytes the client sent that the server has not read yet.
    pub to_server: VecDeque<u8>,
    /// Most bytes one server read returns (0: no limit).
    pub piece: usize,
    /// The client closed its sending side: after `to_server` the server reads EOF.
    pub client_closed: bool,
    /// Everything the server wrote, in order.
    pub to_client: Vec<u8>,
    /// Bytes the server may still write before the socket refuses (None: no limit).
    pub window: Option<usize>,
    /// The server shut its sending side (a half-close).
    pub server_shut_write: bool,
    /// The server dropped its end: the connection is gone.
    pub server_dropped: bool,
}

/// A shared handle on a pipe.
pub type PipeRef = Rc<RefCell<Pipe>>;

/// The server's end of a pipe.
#[derive(Debug)]
pub struct SimSocket(pub PipeRef);

impl Read for SimSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut pipe = self.0.borrow_mut();
        if pipe.to_server.is_empty() {
            return if pipe.client_closed { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let limit = if pipe.piece == 0 { usize::MAX } else { pipe.piece };
        let n = buf.len().min(limit).min(pipe.to_server.len());
        for (slot, byte) in buf.iter_mut().zip(pipe.to_server.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Write for SimSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut pipe = self.0.borrow_mut();
        if pipe.server_shut_write {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let room = pipe.window.unwrap_or(usize::MAX);
        if room == 0 && total > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut left = room.min(total);
        let written = left;
        for buf in bufs {
            let take = buf.len().min(left);
            pipe.to_client.extend_from_slice(&buf[..take]);
            left -= take;
        }
        if let Some(window) = &mut pipe.window {
            *window -= written;
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for SimSocket {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.0.borrow_mut().server_shut_write = true;
        Ok(())
    }
}

impl Drop for SimSocket {
    fn drop(&mut self) {
        self.0.borrow_mut().server_dropped = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_pieces_then_would_block_then_eof() {
        let pipe = PipeRef::default();
        let mut socket = SimSocket(pipe.clone());
        pipe.borrow_mut().to_server.extend(b"hello");
        pipe.borrow_mut().piece = 2;
        let mut buf = [0u8; 16];
        assert_eq!(socket.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"he");
        assert_eq!(socket.read(&mut buf).unwrap(), 2);
        assert_eq!(socket.read(&mut buf).unwrap(), 1);
        assert_eq!(socket.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        pipe.borrow_mut().client_closed = true;
        assert_eq!(socket.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn writes_fill_the_window_then_would_block() {
        let pipe = PipeRef::default();
        let mut socket = SimSocket(pipe.clone());
        pipe.borrow_mut().window = Some(3);
        assert_eq!(socket.write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")]).unwrap(), 3);
        assert_eq!(socket.write(b"x").unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(pipe.borrow().to_client, b"abc");
        drop(socket);
        assert!(pipe.borrow().server_dropped);
    }
}
