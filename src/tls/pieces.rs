//! The small parts [`ServerStream`](super::ServerStream) is made of: how much of a record is
//! still to come, plaintext out of rustls's `ReadTraffic` state and handshake messages out of
//! its `EncodeTlsData`, a write's slices gathered for encryption, and ciphertext onto the
//! socket.

use std::io::{self, ErrorKind, IoSlice, Write};

use mio::net::TcpStream;
use rustls::server::ServerConnectionData;
use rustls::unbuffered::{EncodeError, EncodeTlsData, InsufficientSizeError, ReadTraffic};

/// Plaintext one write encrypts (and so, at most, the ciphertext one connection keeps when
/// its socket takes none of it).
pub const WRITE_LIMIT: usize = 64 * 1024;

/// How many more bytes complete the last record `held` begins (at least 1): the next read
/// takes no more. (While rustls joins a handshake message from several records, the headers
/// it has read are no longer there; the guess may then be off, which costs a read, not data.)
pub fn missing(held: &[u8]) -> usize {
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
pub fn keep_plaintext(
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
pub fn encode(mut data: EncodeTlsData<'_, ServerConnectionData>, unsent: &mut Vec<u8>) {
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
pub fn write_out(tcp: &mut TcpStream, bytes: &[u8]) -> (usize, io::Result<()>) {
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
pub fn send(tcp: &mut TcpStream, unsent: &mut Vec<u8>) -> io::Result<()> {
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
pub fn gather<'a>(bufs: &'a [IoSlice<'_>], plain: &'a mut Vec<u8>) -> &'a [u8] {
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
