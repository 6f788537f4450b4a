//! The simulated processes' connections to the simulated Redis: what the server's own
//! [`RedisBroker`](crate::cluster::RedisBroker) runs over in a simulated cluster. A
//! [`SimDialer`] is a [`Dialer`], so the broker under test is the real one, link, decoder,
//! budgets and all: the bytes it writes are read as Redis reads commands (`commands.rs`), and
//! Redis's replies and pushes reach it encoded as Redis encodes them.
//!
//! The cluster tells each process's broker what its poll would: which of its sockets became
//! readable or writable ([`SimRedis::readiness`], edge-triggered), under the link's token.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};
use mio::Token;

use super::commands::{self, Scripts};
use super::net::{ConnId, SharedRedis};
use crate::cluster::resp::{self, Decoder, Frame, Limits};
use crate::cluster::{Dialer, Socket};

/// A process's open connections to Redis, by the token its broker gave each.
pub type Sockets = Rc<RefCell<Vec<(Token, ConnId)>>>;

/// Dials the simulated Redis for one process.
pub struct SimDialer {
    redis: SharedRedis,
    process: usize,
    sockets: Sockets,
    scripts: Rc<Scripts>,
    /// Links made so far: each gets a new, predictable name, so a seed replays the same run.
    links: u64,
}

impl SimDialer {
    /// A dialer for `process`, whose open sockets are listed in `sockets`.
    pub fn new(redis: SharedRedis, process: usize, sockets: Sockets) -> Self {
        Self { redis, process, sockets, scripts: Rc::new(Scripts::default()), links: 0 }
    }
}

impl Dialer for SimDialer {
    fn dial(&mut self, token: Token) -> io::Result<Box<dyn Socket>> {
        let conn = {
            let mut redis = self.redis.borrow_mut();
            let now = redis.now();
            redis.connect(self.process, now)
        };
        self.sockets.borrow_mut().push((token, conn));
        Ok(Box::new(RedisSocket {
            redis: self.redis.clone(),
            conn,
            sockets: self.sockets.clone(),
            scripts: self.scripts.clone(),
            commands: Decoder::new(Limits::default()),
            unread: BytesMut::new(),
        }))
    }

    fn link_name(&mut self) -> String {
        self.links += 1;
        format!("p{}n{}", self.process, self.links)
    }
}

/// One connection: commands go to Redis as they are written, and what Redis sent waits in
/// `unread` until the broker reads it.
struct RedisSocket {
    redis: SharedRedis,
    conn: ConnId,
    sockets: Sockets,
    scripts: Rc<Scripts>,
    /// Commands as Redis reads them: a write may end mid-command.
    commands: Decoder,
    unread: BytesMut,
}

impl Socket for RedisSocket {
    fn finish_connect(&mut self) -> io::Result<bool> {
        let redis = self.redis.borrow();
        redis.is_connected(self.conn, redis.now())
    }

    /// Writes never block here: Redis reads whatever it is sent.
    fn want_writable(&mut self, _wanted: bool) -> io::Result<()> {
        Ok(())
    }
}

impl Read for RedisSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.unread.is_empty() {
            let mut redis = self.redis.borrow_mut();
            let now = redis.now();
            let arrived = redis.receive(self.conn, now).ok_or(io::ErrorKind::ConnectionReset)?;
            for arrival in &arrived {
                commands::encode(arrival, &mut self.unread);
            }
        }
        if self.unread.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.unread.len());
        buf[..n].copy_from_slice(&self.unread[..n]);
        self.unread.advance(n);
        Ok(n)
    }
}

impl Write for RedisSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut redis = self.redis.borrow_mut();
        let now = redis.now();
        if redis.is_connected(self.conn, now).is_err() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let (mut frames, mut budget) = (Vec::new(), usize::MAX);
        self.commands
            .feed(&Bytes::copy_from_slice(buf), &mut frames, &mut budget)
            .map_err(io::Error::other)?;
        for frame in frames {
            let Frame::Array(items) = frame else {
                return Err(io::Error::other("a command that is not an array"));
            };
            let args: Vec<Bytes> = items.iter().filter_map(resp::bytes).cloned().collect();
            redis.send(self.conn, commands::parse(&args, &self.scripts), now);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for RedisSocket {
    fn drop(&mut self) {
        self.redis.borrow_mut().close(self.conn);
        self.sockets.borrow_mut().retain(|(_, conn)| *conn != self.conn);
    }
}
