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
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError, ReadTraffic,
    UnbufferedStatus,
};
use rustls::ServerConfig;

use super::plain::screen_plain_http;
use super::shared::{self, RECEIVE_CAPACITY};
use super::stream::TlsError;
use crate::connection::Stream;

/// Ciphertext read from the socket at once when no record is under way: a few full records.
const READ_SIZE: usize = 32 * 1024;

/// Plaintext one write encrypts (and so, at most, the ciphertext one connection keeps when
/// its socket takes none of it).
const WRITE_LIMIT: usize = 64 * 1024;

/// Room for each record's header, nonce and tag beyond its plaintext (29 bytes at most with the
/// ring provider's suites), and for a key update rustls sends ahead of the data.
const RECORD_OVERHEAD: usize = 64;

/// The server's side of a TLS connection over its TCP socket.
pub struct ServerStream {
    pub tcp: TcpStream,
    pub tls: UnbufferedServerConnection,
    /// Decrypted plaintext the caller has not read yet: from `plain_at` on.
    plain: Vec<u8>,
    plain_at: usize,
    /// The start of a record still arriving (or of a handshake message in several records).
    partial: Vec<u8>,
    /// Ciphertext the socket has not taken yet.
    unsent: Vec<u8>,
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

impl ServerStream {
    /// A new connection, its handshake still to come.
    pub fn new(tcp: TcpStream, config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self {
            tcp,
            tls: UnbufferedServerConnection::new(config)?,
            plain: Vec::new(),
            plain_at: 0,
            partial: Vec::new(),
            unsent: Vec::new(),
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
        self.plain.capacity() + self.partial.capacity() + self.unsent.capacity()
    }

    /// Ciphertext is waiting for the socket (handshake messages, alerts, or data the socket
    /// refused): the connection must flush again when the socket is writable.
    pub fn has_pending_output(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Writes waiting ciphertext until there is none (`Ok`) or the socket refuses (`WouldBlock`).
    pub fn send_pending(&mut self) -> io::Result<()> {
        send(&mut self.tcp, &mut self.unsent)
    }

    /// Queues the TLS `close_notify` alert (once) and tries to send it.
    pub fn close_notify(&mut self) {
        if self.failed || std::mem::replace(&mut self.close_notify_sent, true) {
            return;
        }
        let mut alert = vec![0; RECORD_OVERHEAD];
        loop {
            let UnbufferedStatus { mut discard, state } = self.tls.process_tls_records(&mut self.partial);
            let done = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    match traffic.queue_close_notify(&mut alert) {
                        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                            alert.resize(required_size, 0);
                            false
                        }
                        Ok(n) => {
                            self.unsent.extend_from_slice(&alert[..n]);
                            true
                        }
                        Err(EncryptError::EncryptExhausted) => true,
                    }
                }
                Ok(ConnectionState::EncodeTlsData(data)) => {
                    encode(data, &mut self.unsent);
                    false
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    false
                }
                Ok(ConnectionState::ReadTraffic(traffic)) => {
                    discard += keep_plaintext(traffic, &mut [], &mut self.plain).1;
                    false
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    false
                }
                // The handshake is not done (or the session is over): no close_notify to send.
                _ => true,
            };
            self.partial.drain(..discard);
            if done {
                break;
            }
        }
        let _ = self.send_pending();
    }

    /// Serves plaintext already decrypted.
    fn take_plain(&mut self, buf: &mut [u8]) -> usize {
        let waiting = &self.plain[self.plain_at..];
        let n = waiting.len().min(buf.len());
        buf[..n].copy_from_slice(&waiting[..n]);
        self.plain_at += n;
        if self.plain_at == self.plain.len() {
            self.plain = Vec::new();
            self.plain_at = 0;
        }
        n
    }

    /// Reads the socket once and processes what came, with what was held: the plaintext count
    /// put in `out` (the rest is kept), `WouldBlock` if the socket had nothing.
    fn receive(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.screening {
            screen_plain_http(&mut self.tcp)?;
            self.screening = false;
        }
        if self.partial.is_empty() {
            return shared::with_receive(|incoming| {
                let (filled, start, end) = self.receive_into(&mut incoming[..READ_SIZE], 0, out)?;
                let rest = &incoming[start..end];
                if !rest.is_empty() {
                    self.partial = Vec::with_capacity(rest.len() + missing(rest));
                    self.partial.extend_from_slice(rest);
                }
                Ok(filled)
            });
        }
        // A record under way: the read goes straight after its start, up to its end.
        let mut partial = std::mem::take(&mut self.partial);
        let held = partial.len();
        let room = missing(&partial).min(RECEIVE_CAPACITY - held);
        if room == 0 {
            self.failed = true;
            return Err(io::Error::new(ErrorKind::InvalidData, "TLS handshake message over 64 KiB"));
        }
        partial.resize(held + room, 0);
        let result = self.receive_into(&mut partial, held, out);
        let (start, end) = match &result {
            Ok((_, start, end)) => (*start, *end),
            Err(_) => (0, held),
        };
        partial.truncate(end);
        partial.drain(..start);
        if !partial.is_empty() {
            self.partial = partial;
        }
        result.map(|(filled, ..)| filled)
    }

    /// Reads the socket into `incoming` after the `held` bytes already there, then processes
    /// them all: the plaintext count put in `out`, and the range of `incoming` left for later.
    fn receive_into(
        &mut self,
        incoming: &mut [u8],
        held: usize,
        out: &mut [u8],
    ) -> io::Result<(usize, usize, usize)> {
        let n = loop {
            match self.tcp.read(&mut incoming[held..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        self.eof |= n == 0;
        let end = held + n;
        let (start, filled) = self.process(&mut incoming[..end], out)?;
        Ok((filled, start, end))
    }

    /// Hands `incoming` to rustls until it needs more: plaintext goes to `out` (what does not
    /// fit is kept), handshake messages and alerts to the socket. Returns how many bytes of
    /// `incoming` rustls is done with, and how many of `out` are filled.
    fn process(&mut self, incoming: &mut [u8], out: &mut [u8]) -> io::Result<(usize, usize)> {
        let (mut start, mut filled) = (0, 0);
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.tls.process_tls_records(&mut incoming[start..]);
            let more = match state {
                Ok(ConnectionState::ReadTraffic(traffic)) => {
                    let (n, taken) = keep_plaintext(traffic, &mut out[filled..], &mut self.plain);
                    filled += n;
                    discard += taken;
                    true
                }
                Ok(ConnectionState::EncodeTlsData(data)) => {
                    encode(data, &mut self.unsent);
                    true
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // What the socket refuses now waits in `unsent` for the next flush.
                    let _ = send(&mut self.tcp, &mut self.unsent);
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
                Err(error) => return Err(self.fail(&mut incoming[start + discard..], error)),
            };
            start += discard;
            if !more {
                return Ok((start, filled));
            }
        }
    }

    /// The session is over: sends the alert rustls queued to say why, and reports the error.
    fn fail(&mut self, incoming: &mut [u8], error: rustls::Error) -> io::Error {
        self.failed = true;
        // Only while rustls has output queued: such a call hands it over before looking at
        // `incoming` again, which would fail (and alert) a second time.
        while self.tls.wants_write() {
            match self.tls.process_tls_records(incoming).state {
                Ok(ConnectionState::EncodeTlsData(data)) => encode(data, &mut self.unsent),
                _ => break,
            }
        }
        let _ = self.send_pending();
        io::Error::new(ErrorKind::InvalidData, TlsError(error))
    }

    /// Encrypts `plaintext` into `sealed`, once rustls has queued (in `unsent`) what must go
    /// before it. `WouldBlock` while the handshake is not done.
    fn seal(&mut self, plaintext: &[u8], sealed: &mut Vec<u8>) -> io::Result<()> {
        sealed.resize(plaintext.len() + (plaintext.len() / 16_384 + 2) * RECORD_OVERHEAD, 0);
        loop {
            // The record under way is passed as it is: rustls may be joining a handshake
            // message from it, and finds it where it left it.
            let UnbufferedStatus { mut discard, state } = self.tls.process_tls_records(&mut self.partial);
            let sealed_now = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match traffic.encrypt(plaintext, sealed) {
                    Ok(n) => {
                        sealed.truncate(n);
                        Some(Ok(()))
                    }
                    Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                        sealed.resize(required_size, 0);
                        None
                    }
                    Err(e @ EncryptError::EncryptExhausted) => Some(Err(io::Error::other(e))),
                },
                Ok(ConnectionState::EncodeTlsData(data)) => {
                    encode(data, &mut self.unsent);
                    None
                }
                // Sent with the data, ahead of it.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    None
                }
                Ok(ConnectionState::ReadTraffic(traffic)) => {
                    discard += keep_plaintext(traffic, &mut [], &mut self.plain).1;
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
                    let mut partial = std::mem::take(&mut self.partial);
                    return Err(self.fail(&mut partial[discard..], error));
                }
            };
            self.partial.drain(..discard);
            if let Some(result) = sealed_now {
                return result;
            }
        }
    }

    /// Sends `sealed` after whatever waits before it; what the socket refuses waits in
    /// `unsent` (a failure shows on the next write or flush).
    fn transmit(&mut self, sealed: &[u8]) {
        if self.unsent.is_empty() {
            let (written, _) = write_out(&mut self.tcp, sealed);
            if written < sealed.len() {
                self.unsent = sealed[written..].to_vec();
            }
        } else {
            self.unsent.extend_from_slice(sealed);
            let _ = self.send_pending();
        }
    }

    fn failure() -> io::Error {
        io::Error::new(ErrorKind::InvalidData, "the TLS session has failed")
    }
}

/// How many more bytes complete the last record `held` begins (at least 1): the next read
/// takes no more. (While rustls joins a handshake message from several records, the headers
/// it has read are no longer there; the guess may then be off, which costs a read, not data.)
fn missing(held: &[u8]) -> usize {
    let mut at = 0;
    while let Some(header) = held.get(at..at + 5) {
        let end = at + 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
        if end > held.len() {
            return end - held.len();
        }
        at = end;
    }
    at + 5 - held.len()
}

/// Copies each decrypted record into `out` while it has room, and the rest into `kept`: the
/// count put in `out`, and how many more bytes of the input the records take.
fn keep_plaintext(
    mut traffic: ReadTraffic<'_, '_, ServerConnectionData>,
    out: &mut [u8],
    kept: &mut Vec<u8>,
) -> (usize, usize) {
    let (mut filled, mut discard) = (0, 0);
    // This rustls decrypts while processing, so `next_record` cannot fail; were it to, the
    // error would come again from the next `process_tls_records`.
    while let Some(Ok(record)) = traffic.next_record() {
        let n = record.payload.len().min(out.len() - filled);
        out[filled..filled + n].copy_from_slice(&record.payload[..n]);
        kept.extend_from_slice(&record.payload[n..]);
        filled += n;
        discard += record.discard;
    }
    (filled, discard)
}

/// Appends a handshake message or alert rustls has to send to `unsent`.
fn encode(mut data: EncodeTlsData<'_, ServerConnectionData>, unsent: &mut Vec<u8>) {
    let Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) = data.encode(&mut [])
    else {
        return; // nothing to send
    };
    let at = unsent.len();
    unsent.resize(at + required_size, 0);
    let written = data.encode(&mut unsent[at..]).unwrap_or(0);
    unsent.truncate(at + written);
}

/// Writes `bytes` until the socket has them all or refuses: how many it took, and why it
/// stopped.
fn write_out(tcp: &mut TcpStream, bytes: &[u8]) -> (usize, io::Result<()>) {
    let mut written = 0;
    while written < bytes.len() {
        match tcp.write(&bytes[written..]) {
            Ok(0) => return (written, Err(ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(()))
}

/// Writes `unsent` until the socket has it all (`Ok`, its memory freed) or refuses.
fn send(tcp: &mut TcpStream, unsent: &mut Vec<u8>) -> io::Result<()> {
    if unsent.is_empty() {
        return Ok(());
    }
    let (written, result) = write_out(tcp, unsent);
    if written == unsent.len() {
        *unsent = Vec::new();
    } else {
        unsent.drain(..written);
    }
    result
}

/// The plaintext of one write, at most [`WRITE_LIMIT`]: a lone slice as it is, several copied
/// together so they make as few records as they can.
fn gather<'a>(bufs: &'a [IoSlice<'_>], plain: &'a mut Vec<u8>) -> &'a [u8] {
    let mut slices = bufs.iter().map(|b| &b[..]).filter(|b| !b.is_empty()).peekable();
    let first = slices.next().unwrap_or_default();
    if slices.peek().is_none() || first.len() >= WRITE_LIMIT {
        return &first[..first.len().min(WRITE_LIMIT)];
    }
    for slice in std::iter::once(first).chain(slices) {
        let room = WRITE_LIMIT - plain.len();
        plain.extend_from_slice(&slice[..slice.len().min(room)]);
        if plain.len() == WRITE_LIMIT {
            break;
        }
    }
    plain
}

impl Read for ServerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.plain_at < self.plain.len() || buf.is_empty() {
                return Ok(self.take_plain(buf));
            }
            if self.failed {
                return Err(Self::failure());
            }
            if self.eof || self.peer_closed {
                return Ok(0); // the end of the peer's data, with or without close_notify
            }
            let n = self.receive(buf)?;
            if n > 0 {
                return Ok(n);
            }
        }
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
        shared::with_send(|buffers| {
            let plaintext = gather(bufs, &mut buffers.plain);
            self.seal(plaintext, &mut buffers.sealed)?;
            self.transmit(&buffers.sealed);
            Ok(plaintext.len())
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
