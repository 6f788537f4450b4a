//! [`ServerStream`]: the server's side of a TLS connection, over rustls's unbuffered API, seen
//! as a plain byte stream (it reads and writes like the socket itself, as [`TlsStream`] does
//! for the clients), so the connection state machine, tungstenite and the outbox run over it
//! unchanged. Unlike rustls's buffered connection it holds no buffer while idle.
//!
//! rustls's buffered API keeps a 4 KiB receive buffer in every connection that has ever read
//! (`DeframerVecBuffer::prepare_read` makes room for a 4,096-byte read before each read, and
//! never shrinks below that): half of an idle TLS connection's memory. Here the server owns
//! the bytes instead:
//! - The socket is read into the loop's one receive buffer (`shared.rs`), where rustls's
//!   `process_tls_records` deframes and decrypts; plaintext is copied into the caller's buffer.
//! - What one call cannot finish stays with the connection, in allocations made only then and
//!   freed once empty: the start of a record still arriving (the next reads go straight into
//!   it, and take no more than completes it, so a record that trickles in costs no copying and
//!   at most its own bytes), and plaintext the caller had no room for (at most one read's).
//! - Writes are gathered and encrypted in the loop's send buffers and written to the socket at
//!   once; only ciphertext the socket refuses stays, and while it does no more plaintext is
//!   taken (`WouldBlock`), as with a full socket.
//!
//! Handshake messages, alerts and key updates come out of rustls's state machine (the
//! `ConnectionState` each call returns) and are sent the same way. A protocol failure sends the
//! alert that explains it and is reported as `InvalidData` carrying a [`TlsError`]. Before the
//! handshake is done there is no `close_notify` to send (rustls's unbuffered API offers one
//! only with the traffic keys): such a connection just closes.
//!
//! [`TlsStream`]: super::TlsStream

use std::fmt;
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncryptError, InsufficientSizeError, UnbufferedStatus};
use rustls::ServerConfig;

use super::pieces::{encode, gather, keep_plaintext, missing, send, write_out};
use super::plain::screen_plain_http;
use super::shared::{self, RECEIVE_CAPACITY};
use super::stream::TlsError;
use crate::connection::Stream;

/// Ciphertext read from the socket at once when no record is under way: a few full records.
const READ_SIZE: usize = 32 * 1024;

/// Room for each record's header, nonce and tag beyond its plaintext (29 bytes at most with the
/// ring provider's suites), and for a key update rustls sends ahead of the data.
const RECORD_OVERHEAD: usize = 64;

/// The server's side of a TLS connection over its TCP socket.
pub struct ServerStream {
    pub tcp: TcpStream,
    pub tls: UnbufferedServerConnection,
    /// What a call could not finish, kept for the next: nothing while the connection is idle.
    held: Option<Box<Held>>,
    /// Before the first byte: a client that speaks plain HTTP is answered in plain text.
    screening: bool,
    /// The peer closed its side of the TCP connection.
    eof: bool,
    /// The peer sent `close_notify`: its data has ended.
    peer_closed: bool,
    close_notify_sent: bool,
    /// The session failed (the alert saying why is sent): nothing more is read or written.
    failed: bool,
}

/// The bytes one connection holds between calls, boxed so that an idle connection pays 8 bytes
/// for them.
#[derive(Default)]
struct Held {
    /// Decrypted plaintext the caller has not read yet: from `plain_at` on.
    plain: Vec<u8>,
    plain_at: usize,
    /// The start of a record still arriving (or of a handshake message in several records).
    partial: Vec<u8>,
    /// Ciphertext the socket has not taken yet.
    unsent: Vec<u8>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.partial.is_empty() && self.unsent.is_empty()
    }
}

impl ServerStream {
    /// A new connection, its handshake still to come.
    pub fn new(tcp: TcpStream, config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self {
            tcp,
            tls: UnbufferedServerConnection::new(config)?,
            held: None,
            screening: true,
            eof: false,
            peer_closed: false,
            close_notify_sent: false,
            failed: false,
        })
    }

    /// Bytes this connection holds beyond rustls's session (allocated, not only used): none
    /// while it is idle.
    pub fn held(&self) -> usize {
        self.held.as_ref().map_or(0, |held| {
            size_of::<Held>() + held.plain.capacity() + held.partial.capacity() + held.unsent.capacity()
        })
    }

    /// Ciphertext is waiting for the socket (handshake messages, alerts, or data the socket
    /// refused): the connection must flush again when the socket is writable.
    pub fn has_pending_output(&self) -> bool {
        self.held.as_ref().is_some_and(|held| !held.unsent.is_empty())
    }

    /// Writes waiting ciphertext until there is none (`Ok`) or the socket refuses (`WouldBlock`).
    pub fn send_pending(&mut self) -> io::Result<()> {
        let Some(held) = &mut self.held else { return Ok(()) };
        let result = send(&mut self.tcp, &mut held.unsent);
        if held.is_empty() {
            self.held = None;
        }
        result
    }

    /// Queues the TLS `close_notify` alert (once) and tries to send it.
    pub fn close_notify(&mut self) {
        if self.failed || std::mem::replace(&mut self.close_notify_sent, true) {
            return;
        }
        self.with_held(Self::queue_close_notify);
        let _ = self.send_pending();
    }

    /// Runs `f` with what the connection holds: boxed if it holds something, else an empty
    /// `Held` of the call's own (no allocation), boxed afterwards only if `f` left bytes in it.
    fn with_held<R>(&mut self, f: impl FnOnce(&mut Self, &mut Held) -> R) -> R {
        let mut boxed = self.held.take();
        let mut local = Held::default();
        let result = f(self, boxed.as_deref_mut().unwrap_or(&mut local));
        self.held = match boxed {
            Some(held) if !held.is_empty() => Some(held),
            Some(_) => None,
            None => (!local.is_empty()).then(|| Box::new(local)),
        };
        result
    }

    fn queue_close_notify(&mut self, held: &mut Held) {
        let mut alert = vec![0; RECORD_OVERHEAD];
        loop {
            let UnbufferedStatus { mut discard, state } = self.tls.process_tls_records(&mut held.partial);
            let done = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    match traffic.queue_close_notify(&mut alert) {
                        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                            alert.resize(required_size, 0);
                            false
                        }
                        Ok(n) => {
                            held.unsent.extend_from_slice(&alert[..n]);
                            true
                        }
                        Err(EncryptError::EncryptExhausted) => true,
                    }
                }
                Ok(ConnectionState::EncodeTlsData(data)) => {
                    encode(data, &mut held.unsent);
                    false
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    false
                }
                Ok(ConnectionState::ReadTraffic(traffic)) => {
                    discard += keep_plaintext(traffic, &mut [], &mut held.plain).1;
                    false
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    false
                }
                Err(error) => {
                    let mut partial = std::mem::take(&mut held.partial);
                    let _ = self.fail(held, &mut partial[discard..], error);
                    return;
                }
                // The handshake is not done (or the session is over): no close_notify to send.
                _ => true,
            };
            held.partial.drain(..discard);
            if done {
                break;
            }
        }
    }

    /// The reading behind `Read::read`: plaintext already decrypted first, then the socket.
    fn read_held(&mut self, held: &mut Held, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if held.plain_at < held.plain.len() || buf.is_empty() {
                return Ok(Self::take_plain(held, buf));
            }
            if self.failed {
                return Err(Self::failure());
            }
            if self.eof || self.peer_closed {
                return Ok(0); // the end of the peer's data, with or without close_notify
            }
            let n = self.receive(held, buf)?;
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// Serves plaintext already decrypted.
    fn take_plain(held: &mut Held, buf: &mut [u8]) -> usize {
        let waiting = &held.plain[held.plain_at..];
        let n = waiting.len().min(buf.len());
        buf[..n].copy_from_slice(&waiting[..n]);
        held.plain_at += n;
        if held.plain_at == held.plain.len() {
            held.plain = Vec::new();
            held.plain_at = 0;
        }
        n
    }

    /// Reads the socket once and processes what came, with what was held: the plaintext count
    /// put in `out` (the rest is kept), `WouldBlock` if the socket had nothing.
    fn receive(&mut self, held: &mut Held, out: &mut [u8]) -> io::Result<usize> {
        if self.screening {
            screen_plain_http(&mut self.tcp)?;
            self.screening = false;
        }
        if held.partial.is_empty() {
            return shared::with_receive(|incoming| {
                let (filled, start, end) = self.receive_into(held, &mut incoming[..READ_SIZE], 0, out)?;
                let rest = &incoming[start..end];
                if !rest.is_empty() {
                    held.partial = Vec::with_capacity(rest.len() + missing(rest));
                    held.partial.extend_from_slice(rest);
                }
                Ok(filled)
            });
        }
        // A record under way: the read goes straight after its start, up to its end.
        let mut partial = std::mem::take(&mut held.partial);
        let kept = partial.len();
        let room = missing(&partial).min(RECEIVE_CAPACITY - kept);
        if room == 0 {
            self.failed = true;
            return Err(io::Error::new(ErrorKind::InvalidData, "TLS handshake message over 64 KiB"));
        }
        partial.resize(kept + room, 0);
        let result = self.receive_into(held, &mut partial, kept, out);
        let (start, end) = match &result {
            Ok((_, start, end)) => (*start, *end),
            Err(_) => (0, kept),
        };
        partial.truncate(end);
        partial.drain(..start);
        if !partial.is_empty() {
            held.partial = partial;
        }
        result.map(|(filled, ..)| filled)
    }

    /// Reads the socket into `incoming` after the `kept` bytes already there, then processes
    /// them all: the plaintext count put in `out`, and the range of `incoming` left for later.
    fn receive_into(
        &mut self,
        held: &mut Held,
        incoming: &mut [u8],
        kept: usize,
        out: &mut [u8],
    ) -> io::Result<(usize, usize, usize)> {
        let n = loop {
            match self.tcp.read(&mut incoming[kept..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        self.eof |= n == 0;
        let end = kept + n;
        let (start, filled) = self.process(held, &mut incoming[..end], out)?;
        Ok((filled, start, end))
    }

    /// Hands `incoming` to rustls until it needs more: plaintext goes to `out` (what does not
    /// fit is kept), handshake messages and alerts to the socket. Returns how many bytes of
    /// `incoming` rustls is done with, and how many of `out` are filled.
    fn process(
        &mut self,
        held: &mut Held,
        incoming: &mut [u8],
        out: &mut [u8],
    ) -> io::Result<(usize, usize)> {
        let (mut start, mut filled) = (0, 0);
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.tls.process_tls_records(&mut incoming[start..]);
            let more = match state {
                Ok(ConnectionState::ReadTraffic(traffic)) => {
                    let (n, taken) = keep_plaintext(traffic, &mut out[filled..], &mut held.plain);
                    filled += n;
                    discard += taken;
                    true
                }
                Ok(ConnectionState::EncodeTlsData(data)) => {
                    encode(data, &mut held.unsent);
                    true
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // What the socket refuses now waits in `unsent` for the next flush.
                    let _ = send(&mut self.tcp, &mut held.unsent);
                    transmit.done();
                    true
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    true
                }
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    false
                }
                // Every whole record is processed (`BlockedHandshake`, `WriteTraffic`). Early
                // data never comes: the config accepts none.
                Ok(_) => false,
                Err(error) => return Err(self.fail(held, &mut incoming[start + discard..], error)),
            };
            start += discard;
            if !more {
                return Ok((start, filled));
            }
        }
    }

    /// The session is over: sends the alert rustls queued to say why, and reports the error.
    fn fail(&mut self, held: &mut Held, incoming: &mut [u8], error: rustls::Error) -> io::Error {
        self.failed = true;
        // Only while rustls has output queued: such a call hands it over before looking at
        // `incoming` again, which would fail (and alert) a second time.
        while self.tls.wants_write() {
            match self.tls.process_tls_records(incoming).state {
                Ok(ConnectionState::EncodeTlsData(data)) => encode(data, &mut held.unsent),
                _ => break,
            }
        }
        let _ = send(&mut self.tcp, &mut held.unsent);
        io::Error::new(ErrorKind::InvalidData, TlsError(error))
    }

    /// Encrypts `plaintext` into the start of `sealed` (the count it fills), once rustls has
    /// queued (in `unsent`) what must go before it. `WouldBlock` while the handshake is not done.
    fn seal(&mut self, held: &mut Held, plaintext: &[u8], sealed: &mut Vec<u8>) -> io::Result<usize> {
        // Grown, never shrunk nor cleared: no write zeroes memory it is about to overwrite.
        let room = plaintext.len() + (plaintext.len() / 16_384 + 2) * RECORD_OVERHEAD;
        if sealed.len() < room {
            sealed.resize(room, 0);
        }
        loop {
            // The record under way is passed as it is: rustls may be joining a handshake
            // message from it, and finds it where it left it.
            let UnbufferedStatus { mut discard, state } = self.tls.process_tls_records(&mut held.partial);
            let sealed_now = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match traffic.encrypt(plaintext, sealed) {
                    Ok(n) => Some(Ok(n)),
                    Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                        sealed.resize(required_size, 0);
                        None
                    }
                    Err(e @ EncryptError::EncryptExhausted) => Some(Err(io::Error::other(e))),
                },
                Ok(ConnectionState::EncodeTlsData(data)) => {
                    encode(data, &mut held.unsent);
                    None
                }
                // Sent with the data, ahead of it.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    None
                }
                Ok(ConnectionState::ReadTraffic(traffic)) => {
                    discard += keep_plaintext(traffic, &mut [], &mut held.plain).1;
                    None
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    None
                }
                Ok(ConnectionState::Closed) => Some(Err(ErrorKind::BrokenPipe.into())),
                // The handshake is not done: the caller's queue keeps the bytes.
                Ok(_) => Some(Err(ErrorKind::WouldBlock.into())),
                Err(error) => {
                    let mut partial = std::mem::take(&mut held.partial);
                    return Err(self.fail(held, &mut partial[discard..], error));
                }
            };
            held.partial.drain(..discard);
            if let Some(result) = sealed_now {
                return result;
            }
        }
    }

    /// Sends `sealed` after whatever waits before it; what the socket refuses waits in
    /// `unsent` (a failure shows on the next write or flush).
    fn transmit(&mut self, held: &mut Held, sealed: &[u8]) {
        if held.unsent.is_empty() {
            let (written, _) = write_out(&mut self.tcp, sealed);
            if written < sealed.len() {
                held.unsent = sealed[written..].to_vec();
            }
        } else {
            held.unsent.extend_from_slice(sealed);
            let _ = send(&mut self.tcp, &mut held.unsent);
        }
    }

    fn failure() -> io::Error {
        io::Error::new(ErrorKind::InvalidData, "the TLS session has failed")
    }
}

impl Read for ServerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.with_held(|stream, held| stream.read_held(held, buf))
    }
}

impl Write for ServerStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.failed {
            return Err(Self::failure());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        if self.close_notify_sent {
            // The peer reads nothing after close_notify: these bytes would only be dropped there.
            return Ok(total);
        }
        // What the socket refused goes first; while it waits, no more is taken.
        self.send_pending()?;
        self.with_held(|stream, held| {
            shared::with_send(|buffers| {
                let plaintext = gather(bufs, &mut buffers.plain);
                let sealed = stream.seal(held, plaintext, &mut buffers.sealed)?;
                stream.transmit(held, &buffers.sealed[..sealed]);
                Ok(plaintext.len())
            })
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_pending()
    }
}

impl Stream for ServerStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.close_notify();
        self.tcp.shutdown(std::net::Shutdown::Write)
    }

    fn has_pending_output(&self) -> bool {
        ServerStream::has_pending_output(self)
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        self.send_pending()
    }

    fn end_session(&mut self) {
        self.close_notify();
    }
}

impl Source for ServerStream {
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

impl fmt::Debug for ServerStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerStream")
            .field("tcp", &self.tcp)
            .field("handshaking", &self.tls.is_handshaking())
            .field("held", &self.held())
            .finish_non_exhaustive()
    }
}
