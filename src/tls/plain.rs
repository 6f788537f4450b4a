//! A client that speaks plain HTTP to the TLS port gets a plain HTTP 400 that says so, rather
//! than a TLS alert it cannot read.

use std::io::{self, ErrorKind, Read, Write};

use mio::net::TcpStream;

/// What a plain `http://` or `ws://` request to the TLS port is told.
const PLAIN_HTTP_REPLY: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 50\r\nConnection: close\r\n\r\nthis port speaks TLS only: use https:// or wss://\n";

/// Looks at the first byte of a new server-side connection, without taking it: `Ok` when it is
/// not a plain request, or the peer closed before sending one (the caller looks no more),
/// `WouldBlock` until it comes. A TLS connection starts with a handshake record (0x16); a plain
/// HTTP request with the letters of its method: that is answered in plain text, and refused
/// (`InvalidData`).
pub fn screen_plain_http(tcp: &mut TcpStream) -> io::Result<()> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first)? == 0 || !first[0].is_ascii_uppercase() {
        return Ok(());
    }
    // The request is read first (closing with unread input would reset the connection and
    // lose the reply), then answered straight on the socket: the reply is small enough for
    // any socket buffer, and the connection ends.
    let mut request = [0u8; 8192];
    let _ = tcp.read(&mut request);
    let _ = tcp.write(PLAIN_HTTP_REPLY);
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    Err(io::Error::new(ErrorKind::InvalidData, "plain HTTP on the TLS port (answered 400)"))
}
