//! The server's connections to Redis: non-blocking TCP sockets registered in the loop's poll,
//! under the link's token. Each is deregistered when dropped, so a link that closes leaves
//! nothing in the poll.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::link::{Dialer, Socket};

/// Dials Redis at one address, registering each socket in the poll.
pub struct TcpDialer {
    addr: SocketAddr,
    registry: Rc<Registry>,
}

impl TcpDialer {
    pub fn new(addr: SocketAddr, registry: &Registry) -> io::Result<Self> {
        Ok(Self { addr, registry: Rc::new(registry.try_clone()?) })
    }
}

impl Dialer for TcpDialer {
    fn dial(&mut self, token: Token) -> io::Result<Box<dyn Socket>> {
        let mut stream = TcpStream::connect(self.addr)?;
        self.registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        // Commands are small and latency matters: no Nagle delay.
        let _ = stream.set_nodelay(true);
        Ok(Box::new(TcpSocket { stream, token, registry: self.registry.clone() }))
    }
}

struct TcpSocket {
    stream: TcpStream,
    token: Token,
    registry: Rc<Registry>,
}

impl Socket for TcpSocket {
    fn finish_connect(&mut self) -> io::Result<bool> {
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        match self.stream.peer_addr() {
            Ok(_) => Ok(true),
            // Not yet: a spurious wakeup while connecting.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn want_writable(&mut self, wanted: bool) -> io::Result<()> {
        let interest = if wanted { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        self.registry.reregister(&mut self.stream, self.token, interest)
    }
}

impl Read for TcpSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for TcpSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Drop for TcpSocket {
    fn drop(&mut self) {
        let _ = self.registry.deregister(&mut self.stream);
    }
}
