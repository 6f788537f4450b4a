//! The bench's sockets below the WebSocket: a connection started from a chosen local address
//! (`--source-addrs`), one read that tells a drained socket from a closed one, and IO errors as
//! a person reads them.

use std::io::{self, Read};

use mio::net::TcpStream;

use crate::tls::client::ClientStream;

/// One read from the server: Some(bytes read), None when the socket is drained (retried on
/// EINTR), or why the connection is over.
pub fn read_some(stream: &mut ClientStream, buf: &mut [u8]) -> Result<Option<usize>, String> {
    loop {
        return match stream.read(buf) {
            Ok(0) => Err("connection closed by the server".into()),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(describe(&e)),
        };
    }
}

/// Starts a non-blocking connection from a chosen local address. The port is left for the
/// kernel to pick at connect time (IP_BIND_ADDRESS_NO_PORT), so ports are shared between
/// destinations rather than reserved per address at bind.
pub fn connect_from(source: std::net::IpAddr, to: std::net::SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads the int it is given; a kernel without the option refuses
        // it, and binding then reserves the port as usual.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                std::ptr::from_ref(&on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    socket.bind(&SockAddr::from(std::net::SocketAddr::new(source, 0)))?;
    match socket.connect(&SockAddr::from(to)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(socket)))
}

/// An IO error as a person reads it: `connection refused`, not `Connection refused (os error 111)`.
pub fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        _ => crate::tls::client::advice(error).unwrap_or_else(|| error.to_string()),
    }
}
