//! The server: one thread, one `mio::Poll`, and the glue between the operating system and the
//! [`Hub`] that owns every connection.
//!
//! Each loop turn:
//! 1. waits for readiness, at most until the hub's next timer (or not at all if some
//!    connection's reads were cut short last turn);
//! 2. accepts new connections ([`Acceptor`]), registering each socket under its slab key;
//! 3. tells the hub which sockets are readable or writable, then reads the connections left
//!    over from last turn (readiness is edge-triggered: no new event will come for them);
//! 4. fires due timers, flushes every connection the turn touched, and applies what the hub
//!    hands back: WRITABLE interest to change, sockets of removed connections to deregister;
//! 5. on SIGINT/SIGTERM, stops accepting and closes every client with 1001, then exits when
//!    they are gone or `--shutdown-timeout` has passed (a second signal exits at once).
//!
//! The parts have one job each: [`acceptor`] the listener and its back-off, [`hub`] the
//! connections and the chat, [`fanout`] queuing and slow-reader verdicts, [`timers`] deadlines.

pub mod acceptor;
pub mod fanout;
pub mod hub;
pub mod timers;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

pub use acceptor::Acceptor;
pub use hub::Hub;

use crate::settings::Settings;

const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);

/// Slab capacity from which an emptied server gives its memory back; below it, keeping the
/// capacity for the next clients costs next to nothing.
const RELEASE_AFTER_CROWD: usize = 1024;

/// The chat server.
pub struct Server {
    poll: Poll,
    acceptor: Acceptor,
    signals: Signals,
    hub: Hub<TcpStream>,
    shutdown_deadline: Option<Instant>,
}

impl Server {
    /// Binds the listening socket and prepares the loop; nothing is accepted until [`run`](Self::run).
    pub fn bind(settings: Settings) -> io::Result<Self> {
        let poll = Poll::new()?;
        let acceptor = Acceptor::bind(&settings, poll.registry(), LISTENER)?;
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(Self { poll, acceptor, signals, hub: Hub::new(settings, Instant::now()), shutdown_deadline: None })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.acceptor.local_addr()
    }

    /// Runs until SIGINT/SIGTERM, then closes every client with 1001 and returns once they are
    /// gone or `--shutdown-timeout` has passed.
    pub fn run(mut self) -> io::Result<()> {
        info!("wschat listening on {}", self.local_addr());
        info!("open {} in a browser to chat", page_url(self.local_addr()));
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            let carried = self.hub.take_unfinished_reads();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(now),
                    SIGNALS => {
                        if self.on_signal(now) {
                            info!("second signal: exiting now");
                            return Ok(());
                        }
                    }
                    Token(key) => {
                        if event.is_writable() {
                            self.hub.on_writable(key);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.hub.on_readable(key, now);
                        }
                    }
                }
            }
            for key in carried {
                self.hub.on_readable(key, now);
            }
            self.hub.fire_timers(now);
            self.finish_turn(now);
            if self.hub.release_memory_after(RELEASE_AFTER_CROWD) {
                trim_heap();
            }
            if self.acceptor.resume_if_due(now) {
                self.accept_all(now);
                self.finish_turn(now);
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.hub.is_empty() {
                    info!("all clients closed; bye");
                    return Ok(());
                }
                if now >= deadline {
                    warn!("shutdown timeout: dropping {} connection(s) still open", self.hub.len());
                    return Ok(());
                }
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let next = [self.hub.next_wakeup(now), self.acceptor.wake_at(), self.shutdown_deadline]
            .into_iter()
            .flatten()
            .min()?;
        if next <= now {
            return Some(Duration::ZERO);
        }
        // Round up so a deadline is never woken for a millisecond early and spun on.
        Some(next - now + Duration::from_millis(1))
    }

    fn accept_all(&mut self, now: Instant) {
        while let Some((mut socket, peer)) = self.acceptor.next(self.hub.len(), now) {
            // Chat lines are small and latency matters more than packet count; the outbox
            // already coalesces everything queued in one turn into one write.
            if let Err(e) = socket.set_nodelay(true) {
                debug!("{peer}: set_nodelay failed: {e}");
            }
            let key = self.hub.vacant_key();
            if let Err(e) = self.poll.registry().register(&mut socket, Token(key), Interest::READABLE) {
                warn!("{peer}: cannot register socket: {e}");
                continue;
            }
            self.hub.admit(socket, peer, now);
        }
    }

    /// Flushes what the turn queued and applies what the hub handed back.
    fn finish_turn(&mut self, now: Instant) {
        self.hub.flush(now);
        let mut failed = Vec::new();
        while let Some((key, socket, writable)) = self.hub.pop_interest_change() {
            let interest =
                if writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            if let Err(e) = self.poll.registry().reregister(socket, Token(key), interest) {
                failed.push((key, e));
            }
        }
        for (key, e) in failed {
            self.hub.remove(key, &format!("reregister failed: {e}"), now);
        }
        while let Some(mut socket) = self.hub.pop_released() {
            let _ = self.poll.registry().deregister(&mut socket);
            // A descriptor and a slot are free again.
            self.acceptor.connection_closed(now);
        }
    }

    /// Returns true if this is a second signal and the process should stop at once.
    fn on_signal(&mut self, now: Instant) -> bool {
        let mut got = false;
        for signal in self.signals.pending() {
            got = true;
            info!("received signal {signal}");
        }
        if !got {
            return false;
        }
        if self.shutdown_deadline.is_some() {
            return true;
        }
        info!("shutting down: closing {} connection(s) with 1001", self.hub.len());
        self.shutdown_deadline = Some(now + self.hub.settings().shutdown_timeout);
        self.acceptor.close(self.poll.registry());
        self.hub.shut_down(now);
        false
    }
}

/// Where a browser on this machine finds the page: the bound address, or loopback when bound
/// to every interface (a browser cannot open `0.0.0.0`).
fn page_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    format!("http://{}/", SocketAddr::new(ip, addr.port()))
}

/// Returns free heap pages to the operating system, so an idle server does not stay at its
/// busiest size.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the OS; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_url_is_one_a_browser_can_open() {
        assert_eq!(page_url("127.0.0.1:9001".parse().unwrap()), "http://127.0.0.1:9001/");
        assert_eq!(page_url("0.0.0.0:80".parse().unwrap()), "http://127.0.0.1:80/");
        assert_eq!(page_url("[::]:9001".parse().unwrap()), "http://[::1]:9001/");
        assert_eq!(page_url("[::1]:9001".parse().unwrap()), "http://[::1]:9001/");
    }
}
