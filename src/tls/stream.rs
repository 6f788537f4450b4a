//! [`TlsStream`]: a rustls session over a non-blocking mio socket, seen as a plain byte stream,
//! so that tungstenite, the connection state machine and the outbox run over TLS unchanged.
//!
//! The IO follows rustls's own `tlsserver-mio` example: ciphertext comes in with `read_tls` and
//! `process_new_packets`, plaintext is taken from `reader()`; plaintext goes into `writer()` and
//! ciphertext out with `write_tls`. The traps, and how this file keeps out of them:
//! - `read_tls` refuses while decrypted plaintext waits unread: ciphertext is only read once
//!   `reader()` reports it has nothing left (`WouldBlock`).
//! - rustls buffers at most [`BUFFER_LIMIT`] bytes of ciphertext the socket has not taken; past
//!   it `writer().write` accepts nothing (`Ok(0)`), which becomes `WouldBlock` here: the
//!   caller's queue keeps the bytes and waits for WRITABLE, as it does for a full socket.
//! - Handshake messages and alerts are produced while *reading*; they are sent at once when the
//!   socket takes them, and otherwise [`has_pending_output`](TlsStream::has_pending_output)
//!   tells the connection to ask for WRITABLE.
//! - A clean end sends `close_notify` ([`close_notify`](TlsStream::close_notify)).
//!
//! It carries the clients' side (`wschat-client`, `wschat-bench`) over a `ClientConnection`.
//! The server's connections use [`ServerStream`](super::ServerStream) instead, over rustls's
//! unbuffered API, whose receive buffer is shared rather than kept by each connection;
//! [`server`](TlsStream::server) remains for a buffered server side (the backpressure test in
//! `tests/tls.rs` drives one).

use std::io::{self, ErrorKind, Read, Write};
use std::ops::{Deref, DerefMut};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::{ConnectionCommon, SideData};

use super::plain::screen_plain_http;
use crate::connection::Stream;

/// Ciphertext rustls may hold for one connection beyond what its socket has taken. Small, so an
/// idle or stalled connection costs little; large enough for a few full TLS records per write.
pub const BUFFER_LIMIT: usize = 64 * 1024;

/// A TLS session (server or client side) over a TCP socket.
#[derive(Debug)]
pub struct TlsStream<C> {
    pub tcp: TcpStream,
    pub tls: C,
    /// The peer closed its side of the TCP connection.
    eof: bool,
    close_notify_sent: bool,
    /// Server side, before the first byte: a client that speaks plain HTTP to the TLS port
    /// gets a plain HTTP 400 that says so, rather than a TLS alert it cannot read.
    answer_plain_http: bool,
}

impl<C, D> TlsStream<C>
where
    C: Deref<Target = ConnectionCommon<D>> + DerefMut,
    D: SideData,
{
    pub fn new(tcp: TcpStream, mut tls: C) -> Self {
        tls.set_buffer_limit(Some(BUFFER_LIMIT));
        Self { tcp, tls, eof: false, close_notify_sent: false, answer_plain_http: false }
    }

    /// The server's side of a new connection: also answers plain HTTP with a readable 400.
    pub fn server(tcp: TcpStream, tls: C) -> Self {
        Self { answer_plain_http: true, ..Self::new(tcp, tls) }
    }

    /// Ciphertext is waiting for the socket (handshake messages, alerts, or data the socket
    /// refused): the connection must flush again when the socket is writable.
    pub fn has_pending_output(&self) -> bool {
        self.tls.wants_write()
    }

    /// Writes waiting ciphertext until there is none (`Ok`) or the socket refuses (`WouldBlock`).
    pub fn send_pending(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Queues the TLS `close_notify` alert (once) and tries to send it.
    pub fn close_notify(&mut self) {
        if !std::mem::replace(&mut self.close_notify_sent, true) {
            self.tls.send_close_notify();
            let _ = self.send_pending();
        }
    }

    /// Reads ciphertext from the socket (noting the end of input) and processes it.
    fn receive(&mut self) -> io::Result<()> {
        if self.answer_plain_http {
            screen_plain_http(&mut self.tcp)?;
            self.answer_plain_http = false;
        }
        loop {
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let processed = self.tls.process_new_packets();
        // Handshake replies, or the alert that explains a failure: out as soon as possible.
        match self.send_pending() {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) if processed.is_ok() => return Err(e),
            Err(_) => {}
        }
        match processed {
            Ok(_) => Ok(()),
            Err(e) => Err(io::Error::new(ErrorKind::InvalidData, TlsError(e))),
        }
    }
}

/// A TLS protocol failure (a bad record, a failed handshake, a client speaking plain HTTP).
#[derive(Debug)]
pub struct TlsError(pub rustls::Error);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS error: {}", self.0)
    }
}

impl std::error::Error for TlsError {}

impl<C, D> Read for TlsStream<C>
where
    C: Deref<Target = ConnectionCommon<D>> + DerefMut,
    D: SideData,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n), // 0 after the peer's close_notify: end of stream
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The peer closed TCP without close_notify: still the end of its input.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            self.receive()?;
        }
    }
}

impl<C, D> Write for TlsStream<C>
where
    C: Deref<Target = ConnectionCommon<D>> + DerefMut,
    D: SideData,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut accepted = self.tls.writer().write_vectored(bufs)?;
        if accepted == 0 && bufs.iter().any(|b| !b.is_empty()) {
            // rustls holds as much as it may: make room by sending it, then try once more.
            self.send_pending()?;
            accepted = self.tls.writer().write_vectored(bufs)?;
            if accepted == 0 {
                // Still full: plaintext waiting for a handshake that has not finished.
                return Err(ErrorKind::WouldBlock.into());
            }
        }
        match self.send_pending() {
            Ok(()) => Ok(accepted),
            // What rustls took is written, as far as the caller is concerned: the socket's
            // refusal (or failure) shows again on the next write or flush.
            Err(_) if accepted > 0 => Ok(accepted),
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_pending()
    }
}

impl<C, D> Stream for TlsStream<C>
where
    C: Deref<Target = ConnectionCommon<D>> + DerefMut,
    D: SideData,
{
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.close_notify();
        self.tcp.shutdown(std::net::Shutdown::Write)
    }

    fn has_pending_output(&self) -> bool {
        TlsStream::has_pending_output(self)
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        self.send_pending()
    }

    fn end_session(&mut self) {
        self.close_notify();
    }
}

impl<C> Source for TlsStream<C> {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        self.tcp.register(registry, token, interests)
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        self.tcp.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.tcp.deregister(registry)
    }
}
