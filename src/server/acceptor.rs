//! The listening socket: accepting connections up to the connection cap, and backing off when
//! the process runs out of descriptors or memory.
//!
//! Readiness is edge-triggered, so the listener is drained until `WouldBlock` each time. Two
//! things pause accepting: the cap (clients plus a margin to answer a burst of over-limit
//! clients with 503 rather than leave them hanging), lifted when a connection closes; and an
//! accept error such as EMFILE, after which the listener stays readable, so retrying at once
//! would spin: the server waits [`ACCEPT_BACKOFF`] instead, warning at most every
//! [`ACCEPT_WARNING_INTERVAL`] so the log stays readable. That pause ([`AcceptPause`]) is the
//! metrics listener's too.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::settings::Settings;

/// Wait after an accept failure for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Shortest interval between two warnings about failing accepts.
pub const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The listener and its pause state.
pub struct Acceptor {
    /// Open for the server's whole life: while it shuts down, newcomers are answered 503.
    listener: TcpListener,
    local_addr: SocketAddr,
    /// Most connections held at once.
    cap: usize,
    pause: AcceptPause,
}

impl Acceptor {
    /// Binds the listener with the configured backlog and registers it under `token`.
    pub fn bind(settings: &Settings, registry: &Registry, token: Token) -> io::Result<Self> {
        let mut listener = listen(settings.addr, settings.backlog, settings.reuse_port)?;
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(Self {
            local_addr: listener.local_addr()?,
            listener,
            cap: settings.accept_cap(),
            pause: AcceptPause::new(""),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next connection waiting, given that `open` connections are held now; None when the
    /// listener is drained or accepting is paused.
    pub fn next(&mut self, open: usize, now: Instant) -> Option<(TcpStream, SocketAddr)> {
        if open >= self.cap && !self.pause.is_paused() {
            debug!("connection cap reached; accepting paused until a connection closes");
            self.pause.until_room();
        }
        self.pause.accept(&self.listener, now)
    }

    /// A connection closed: a descriptor and a slot are free, so a paused acceptor retries at
    /// the end of this turn.
    pub fn connection_closed(&mut self, now: Instant) {
        self.pause.room_made(now);
    }

    /// When a paused acceptor wants to try again.
    pub fn wake_at(&self) -> Option<Instant> {
        self.pause.wake_at()
    }

    /// Lifts a pause that is due at `now`; true if accepting should be tried again.
    pub fn resume_if_due(&mut self, now: Instant) -> bool {
        self.pause.resume_if_due(now)
    }
}

/// Whether a listener may accept now, and when a paused one tries again: until a connection
/// closes (the chat's cap), or [`ACCEPT_BACKOFF`] after a failure for lack of resources. The
/// chat listener and the metrics listener (`crate::metrics::endpoint`) each keep one.
#[derive(Debug)]
pub struct AcceptPause {
    /// Starts the warnings: which listener failed ("" for the chat's, "metrics: ").
    label: &'static str,
    paused: bool,
    /// With `paused`: when to try again (None: when a connection closes).
    retry_at: Option<Instant>,
    last_warning: Option<Instant>,
}

impl AcceptPause {
    pub fn new(label: &'static str) -> Self {
        Self { label, paused: false, retry_at: None, last_warning: None }
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Pauses until a connection closes.
    pub fn until_room(&mut self) {
        self.paused = true;
        self.retry_at = None;
    }

    /// The next connection waiting on `listener`; None when it is drained or accepting is
    /// paused. A failure for lack of resources pauses for [`ACCEPT_BACKOFF`]: the listener
    /// stays readable, so retrying at once would spin.
    pub fn accept(&mut self, listener: &TcpListener, now: Instant) -> Option<(TcpStream, SocketAddr)> {
        while !self.paused {
            match listener.accept() {
                Ok(accepted) => return Some(accepted),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if is_transient(&e) => continue,
                Err(e) => self.back_off(&e, now),
            }
        }
        None
    }

    fn back_off(&mut self, error: &io::Error, now: Instant) {
        let label = self.label;
        if self.last_warning.is_none_or(|at| now >= at + ACCEPT_WARNING_INTERVAL) {
            self.last_warning = Some(now);
            warn!("{label}accept failed: {error}; retrying every {ACCEPT_BACKOFF:?} (further failures logged at debug)");
        } else {
            debug!("{label}accept failed again: {error}");
        }
        self.paused = true;
        self.retry_at = Some(now + ACCEPT_BACKOFF);
    }

    /// A connection closed: a descriptor (and a slot) are free, so a pause ends at `now`.
    pub fn room_made(&mut self, now: Instant) {
        if self.paused {
            self.retry_at = Some(now);
        }
    }

    /// When a paused listener wants to try again.
    pub fn wake_at(&self) -> Option<Instant> {
        self.retry_at.filter(|_| self.paused)
    }

    /// Lifts a pause that is due at `now`; true if accepting should be tried again.
    pub fn resume_if_due(&mut self, now: Instant) -> bool {
        if !self.paused || self.retry_at.is_none_or(|at| now < at) {
            return false;
        }
        self.paused = false;
        self.retry_at = None;
        true
    }
}

/// Binds a non-blocking listener with our own backlog (mio's `bind` fixes it at 128).
fn listen(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Lets a restarted server bind again while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    // `--reuse-port`: several processes on one address, the kernel balancing new connections.
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Errors that concern only the connection being accepted, not the listener.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_ends_when_room_is_made_or_the_back_off_is_over() {
        let t0 = Instant::now();
        let mut pause = AcceptPause::new("");
        assert!(!pause.is_paused() && pause.wake_at().is_none() && !pause.resume_if_due(t0));
        // The cap: no timer, until a connection closes.
        pause.until_room();
        assert!(pause.is_paused() && pause.wake_at().is_none() && !pause.resume_if_due(t0));
        pause.room_made(t0);
        assert_eq!(pause.wake_at(), Some(t0));
        assert!(pause.resume_if_due(t0) && !pause.is_paused());
        // A failure for lack of resources: retried after the back-off, warned once.
        pause.back_off(&io::Error::from_raw_os_error(24), t0);
        assert_eq!(pause.wake_at(), Some(t0 + ACCEPT_BACKOFF));
        assert!(!pause.resume_if_due(t0 + ACCEPT_BACKOFF / 2));
        assert!(pause.resume_if_due(t0 + ACCEPT_BACKOFF));
        pause.back_off(&io::Error::from_raw_os_error(24), t0 + ACCEPT_BACKOFF);
        assert_eq!(pause.last_warning, Some(t0), "the second failure within the interval is not warned");
    }
}
