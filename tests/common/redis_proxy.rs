//! A TCP proxy between one wschat process and Redis that a test steers, so that a race window
//! is opened on purpose rather than by timing: it can hold back what Redis sends on one of the
//! process's two links and let it go whole or up to a given push, swallow the commands sent
//! from a given one on, cut every connection, and say what has passed each way (a test waits
//! for that, bounded, instead of sleeping).
//!
//! A wschat process opens two links: the command link (its first command is `SELECT`) and the
//! subscription link (anything else first). Everything is per link kind, over that kind's
//! connections still open.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::tcp::{self, CLOSE_WAIT};
use super::WAIT;

/// Which of a wschat process's two Redis links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Commands,
    Subscriptions,
}

/// One proxied connection.
struct Conn {
    /// Not known until the server's first bytes.
    kind: Option<Link>,
    /// The socket to the server, and both ends of it (the server's end first).
    to_server: TcpStream,
    ends: (SocketAddr, SocketAddr),
    to_redis: TcpStream,
    /// Everything the server sent (including what was swallowed).
    sent: Vec<u8>,
    /// Everything of Redis's passed on to the server.
    passed: Vec<u8>,
    /// What Redis sent that is being held back.
    held: Vec<u8>,
    /// The rest of what the server sends never reaches Redis.
    swallowing: bool,
}

#[derive(Default)]
struct State {
    conns: HashMap<usize, Conn>,
    /// Redis's bytes on links of this kind are held (index: `Link as usize`).
    holding: [bool; 2],
    /// Once the server sends a chunk containing this on a link of this kind, that link's
    /// replies are held from then on.
    hold_from: Option<(Link, Vec<u8>)>,
    /// Once the server sends a chunk containing this on a link of this kind, it and everything
    /// after it on that connection are swallowed.
    swallow_from: Option<(Link, Vec<u8>)>,
    /// The server's end and the proxy's of every connection [`RedisProxy::cut`] dropped.
    cut: Vec<(SocketAddr, SocketAddr)>,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

pub struct RedisProxy {
    addr: SocketAddr,
    shared: Shared,
}

/// The state, even after a test failed holding it (its panic is the one worth reading).
fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl RedisProxy {
    /// A proxy to the Redis on `redis_port`, passing everything through until told otherwise.
    pub fn start(redis_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared: Shared = Arc::default();
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for (id, server) in listener.incoming().enumerate() {
                let Ok(server) = server else { continue };
                let Ok(redis) = TcpStream::connect(("127.0.0.1", redis_port)) else { continue };
                let _ = server.set_nodelay(true);
                let _ = redis.set_nodelay(true);
                let conn = Conn {
                    kind: None,
                    to_server: server.try_clone().unwrap(),
                    ends: (server.peer_addr().unwrap(), server.local_addr().unwrap()),
                    to_redis: redis.try_clone().unwrap(),
                    sent: Vec::new(),
                    passed: Vec::new(),
                    held: Vec::new(),
                    swallowing: false,
                };
                lock(&accepting).conns.insert(id, conn);
                let upstream = accepting.clone();
                std::thread::spawn(move || pump_to_redis(id, server, &upstream));
                let downstream = accepting.clone();
                std::thread::spawn(move || pump_to_server(id, redis, &downstream));
            }
        });
        Self { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// Holds back what Redis sends on `link`'s connections (and on new ones of that kind)
    /// until [`release`](Self::release).
    pub fn hold(&self, link: Link) {
        self.state().holding[link as usize] = true;
    }

    /// Holds back what Redis sends on `link` from the moment the server sends a command
    /// containing `needle` on it: its reply, and everything after, is held.
    pub fn hold_replies_from(&self, link: Link, needle: &[u8]) {
        self.state().hold_from = Some((link, needle.to_vec()));
    }

    /// Swallows what the server sends on `link` from the first chunk containing `needle` on:
    /// Redis seems to stop answering that connection.
    pub fn swallow_from(&self, link: Link, needle: &[u8]) {
        self.state().swallow_from = Some((link, needle.to_vec()));
    }

    /// Lets go of everything held on `link`, in order, and stops holding it.
    pub fn release(&self, link: Link) {
        let mut state = self.state();
        state.holding[link as usize] = false;
        for conn in state.conns.values_mut().filter(|c| c.kind == Some(link)) {
            let held = std::mem::take(&mut conn.held);
            conn.pass(&held);
        }
    }

    /// Lets go of what is held on `link` up to and including the first whole reply or push
    /// containing `needle`; the rest stays held.
    #[track_caller]
    pub fn release_through(&self, link: Link, needle: &[u8]) {
        let mut state = self.state();
        let conn = state.conns.values_mut().find(|c| c.kind == Some(link) && contains(&c.held, needle));
        let Some(conn) = conn else {
            panic!("nothing held on {link:?} contains {:?}", String::from_utf8_lossy(needle))
        };
        let mut end = 0;
        while !contains(&conn.held[..end], needle) {
            end = resp_end(&conn.held, end).expect("whole frames are held");
        }
        let released: Vec<u8> = conn.held.drain(..end).collect();
        conn.pass(&released);
    }

    /// Waits (bounded) until the server has sent `needle` on a `link` connection still open.
    #[track_caller]
    pub fn wait_sent(&self, link: Link, needle: &[u8]) {
        self.wait_for(
            &format!("the server sending {:?} on {link:?}", String::from_utf8_lossy(needle)),
            |c| c.kind == Some(link) && contains(&c.sent, needle),
        );
    }

    /// Waits (bounded) until Redis has sent `needle` on a `link` connection and it is held.
    #[track_caller]
    pub fn wait_held(&self, link: Link, needle: &[u8]) {
        self.wait_for(&format!("Redis's {:?} held on {link:?}", String::from_utf8_lossy(needle)), |c| {
            c.kind == Some(link) && contains(&c.held, needle)
        });
    }

    /// Waits (bounded) until Redis's `needle` has been passed on to the server on `link` and
    /// the server's kernel has acknowledged every byte passed (so the server has it, whether
    /// or not it has read it yet: anything passed later arrives after it).
    #[track_caller]
    pub fn wait_delivered(&self, link: Link, needle: &[u8]) {
        self.wait_for(&format!("Redis's {:?} passed on {link:?}", String::from_utf8_lossy(needle)), |c| {
            c.kind == Some(link) && contains(&c.passed, needle)
        });
        let ends: Vec<_> =
            self.state().conns.values().filter(|c| c.kind == Some(link)).map(|c| c.ends).collect();
        for (server, proxy) in ends {
            tcp::wait_tcp("the server acknowledging what was passed", proxy, server, |s| s.unacked == 0);
        }
    }

    #[track_caller]
    fn wait_for(&self, what: &str, ready: impl Fn(&Conn) -> bool) {
        let deadline = Instant::now() + WAIT;
        let mut state = self.state();
        while !state.conns.values().any(&ready) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what}: not within {WAIT:?}");
            state = self.shared.1.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Drops every connection through the proxy (new ones are let through, and held or
    /// swallowed as asked).
    pub fn cut(&self) {
        let mut state = self.state();
        for (_, conn) in std::mem::take(&mut state.conns) {
            let _ = conn.to_server.shutdown(Shutdown::Both);
            let _ = conn.to_redis.shutdown(Shutdown::Both);
            state.cut.push(conn.ends);
        }
    }

    /// Waits (bounded) until the server's kernel has the FIN of every connection cut (its end
    /// is in CLOSE_WAIT): for a stopped server, the EOF waits in its sockets, to be read when
    /// it runs again. (A running server closes its end at once: this is for a stopped one.)
    #[track_caller]
    pub fn wait_cut_delivered(&self) {
        let cut = self.state().cut.clone();
        assert!(!cut.is_empty(), "nothing was cut");
        for (server, proxy) in cut {
            tcp::wait_tcp("the server's kernel receiving the cut", server, proxy, |s| s.state == CLOSE_WAIT);
        }
    }
}

impl Conn {
    /// Passes Redis's `bytes` on to the server.
    fn pass(&mut self, bytes: &[u8]) {
        if self.to_server.write_all(bytes).is_ok() {
            self.passed.extend_from_slice(bytes);
        }
    }
}

/// The server's bytes to Redis, for connection `id`: seen, and passed on unless swallowed.
fn pump_to_redis(id: usize, mut from: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        let chunk = &buf[..n];
        let to = {
            let mut state = lock(shared);
            let State { conns, holding, hold_from, swallow_from, .. } = &mut *state;
            let Some(conn) = conns.get_mut(&id) else { break };
            let kind = *conn.kind.get_or_insert(if contains(chunk, b"SELECT") {
                Link::Commands
            } else {
                Link::Subscriptions
            });
            conn.sent.extend_from_slice(chunk);
            // Armed before the command reaches Redis, so its reply cannot slip through.
            if hold_from.as_ref().is_some_and(|(link, needle)| *link == kind && contains(chunk, needle)) {
                holding[kind as usize] = true;
                *hold_from = None;
            }
            if swallow_from.as_ref().is_some_and(|(link, needle)| *link == kind && contains(chunk, needle)) {
                conn.swallowing = true;
                *swallow_from = None;
            }
            shared.1.notify_all();
            (!conn.swallowing).then(|| conn.to_redis.try_clone().unwrap())
        };
        if let Some(mut to) = to {
            if to.write_all(chunk).is_err() {
                break;
            }
        }
    }
    if let Some(conn) = lock(shared).conns.get(&id) {
        let _ = conn.to_redis.shutdown(Shutdown::Both);
    }
}

/// Redis's bytes to the server, for connection `id`: passed on, or held.
fn pump_to_server(id: usize, mut from: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        let mut state = lock(shared);
        let holding = state.holding;
        let Some(conn) = state.conns.get_mut(&id) else { break };
        // Written under the lock: a release cannot overtake, nor be overtaken by, new bytes.
        if conn.kind.is_some_and(|kind| holding[kind as usize]) || !conn.held.is_empty() {
            conn.held.extend_from_slice(&buf[..n]);
        } else {
            conn.pass(&buf[..n]);
        }
        shared.1.notify_all();
    }
    if let Some(conn) = lock(shared).conns.get(&id) {
        let _ = conn.to_server.shutdown(Shutdown::Both);
    }
}

/// Where the RESP value starting at `at` ends, if `bytes` holds all of it.
fn resp_end(bytes: &[u8], at: usize) -> Option<usize> {
    let line = at + bytes.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let header: i64 = std::str::from_utf8(&bytes[at + 1..line]).ok()?.parse().unwrap_or(0);
    let after = line + 2;
    match bytes[at] {
        b'$' if header >= 0 => Some(after + header as usize + 2).filter(|&end| end <= bytes.len()),
        b'*' | b'>' => (0..header.max(0)).try_fold(after, |at, _| resp_end(bytes, at)),
        _ => Some(after),
    }
}
