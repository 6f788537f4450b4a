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
//!    they are gone or `--shutdown-timeout` has passed (a second signal exits at once); on
//!    SIGHUP, re-reads the TLS certificate and key, and the JWT keys, for what is still to
//!    come (new connections, new handshakes and renewals).
//!
//! The server is generic over its connections' stream ([`Accept`]): the plain socket, or a
//! [`ServerStream`] over it when `--tls-cert` is given. Each is its own monomorphic loop, so the
//! plain path pays nothing for TLS.
//!
//! With `--metrics`, a second listener in the same poll answers scrapes from the hub's
//! counters ([`MetricsEndpoint`]); the loop times each turn's work for it. With `--api`, a
//! third one serves the HTTP API ([`ApiEndpoint`]): the loop hands its calls to the hub and the
//! chat's answers back to it, once a turn (SIGHUP re-reads its keys).
//!
//! The hub's [`Broker`] carries the chat between processes: in one process the in-process
//! broker, which needs nothing from the loop; with `--redis`, the [`RedisBroker`], whose two
//! Redis connections are in this same poll too: each turn the broker reads what its links
//! left over and runs its timers, its notices go to the chat and the chat's requests to it,
//! and it writes them once, at the end of the turn (see `crate::broker`, `crate::cluster`).
//!
//! The parts have one job each: [`acceptor`] the listener and its back-off, [`hub`] the
//! connections and the chat, [`fanout`] queuing and slow-reader verdicts, [`timers`] deadlines.

pub mod acceptor;
pub mod fanout;
pub mod hub;
pub mod timers;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, info, warn};
use mio::event::Source;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::ServerConfig;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

pub use acceptor::Acceptor;
pub use hub::Hub;

use crate::api::route::Local;
use crate::api::{ApiEndpoint, MAX_CLIENTS};
use crate::cluster::RedisBroker;
use crate::connection::Reading;
use crate::connection::Stream;
use crate::metrics::slots::MAX_SCRAPES;
use crate::metrics::MetricsEndpoint;
use crate::settings::Settings;
use crate::store::Store;
use crate::tls::ServerStream;

/// How an accepted socket becomes a connection's stream.
pub trait Accept: Stream + Source + Sized {
    /// `tls` is the certificate config for new connections (present exactly when the server
    /// was started with `--tls-cert`).
    fn accept(socket: TcpStream, tls: Option<&Arc<ServerConfig>>) -> io::Result<Self>;
}

impl Accept for TcpStream {
    fn accept(socket: TcpStream, _: Option<&Arc<ServerConfig>>) -> io::Result<Self> {
        Ok(socket)
    }
}

/// A TLS connection on the server's side.
pub type TlsServerStream = ServerStream;

impl Accept for TlsServerStream {
    fn accept(socket: TcpStream, tls: Option<&Arc<ServerConfig>>) -> io::Result<Self> {
        let config = tls.ok_or_else(|| io::Error::other("no TLS certificate configured"))?;
        ServerStream::new(socket, config.clone()).map_err(io::Error::other)
    }
}

const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
const METRICS_LISTENER: Token = Token(usize::MAX - 2);
/// The metrics endpoint's connections take tokens from here on, far above any slab key.
const METRICS_FIRST: usize = usize::MAX - 2 - MAX_SCRAPES;
/// The Redis links (`--redis`): commands, subscriptions.
const REDIS_TOKENS: (Token, Token) = (Token(METRICS_FIRST - 1), Token(METRICS_FIRST - 2));
const API_LISTENER: Token = Token(METRICS_FIRST - 3);
/// The API's connections take tokens from here on.
const API_FIRST: usize = METRICS_FIRST - 3 - MAX_CLIENTS;

/// Slab capacity from which an emptied server gives its memory back; below it, keeping the
/// capacity for the next clients costs next to nothing.
const RELEASE_AFTER_CROWD: usize = 1024;
/// A turn with at most this many ready sockets is light: the loop keeps up, and a socket whose
/// read came back short is left for its next readiness event rather than read again to find
/// it empty (a system call per message at a chat's pace). Past it, the loop is behind, and
/// reading every socket until it would block gathers more per write.
const LIGHT_TURN_EVENTS: usize = 4;

/// The chat server, over plain sockets (`S` = `TcpStream`) or TLS ([`TlsServerStream`]).
pub struct Server<S = TcpStream> {
    poll: Poll,
    acceptor: Acceptor,
    signals: Signals,
    hub: Hub<S>,
    /// The certificate for connections still to come (replaced on SIGHUP).
    tls: Option<Arc<ServerConfig>>,
    /// `--metrics`: the scrape listener, in this same poll.
    metrics: Option<MetricsEndpoint>,
    /// `--api`: the HTTP API's listener, in this same poll.
    api: Option<ApiEndpoint>,
    /// Scratch list of the chat's answers to API calls, reused.
    api_answers: Vec<(crate::chat::api::Ticket, crate::chat::api::ApiAnswer)>,
    /// When the server started, in seconds since the Unix epoch (a metric).
    started_at: f64,
    shutdown_deadline: Option<Instant>,
}

impl<S: Accept> Server<S> {
    /// Binds the listening socket and prepares the loop; nothing is accepted until [`run`](Self::run).
    pub fn bind(settings: Settings) -> io::Result<Self> {
        // The store first: a bad one is reported before anything listens.
        let open = |dir: &std::path::Path| Store::open(dir).map(|store| store.retaining(settings.retain));
        let store = settings.data_dir.as_deref().map(open).transpose().map_err(io::Error::other)?;
        let poll = Poll::new()?;
        let acceptor = Acceptor::bind(&settings, poll.registry(), LISTENER)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", settings.addr)))?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        let tls = settings.tls.as_ref().map(|tls| tls.config.clone());
        let metrics = match settings.metrics {
            Some(addr) => {
                Some(MetricsEndpoint::bind(addr, poll.registry(), METRICS_LISTENER, METRICS_FIRST).map_err(
                    |e| io::Error::new(e.kind(), format!("cannot listen on {addr} for --metrics: {e}")),
                )?)
            }
            None => None,
        };
        let api = match settings.api.clone() {
            Some((addr, keys)) => Some(
                ApiEndpoint::bind(
                    addr,
                    (keys, settings.max_message_size),
                    poll.registry(),
                    API_LISTENER,
                    API_FIRST,
                )
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr} for --api: {e}")))?,
            ),
            None => None,
        };
        let started_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let mut hub = match &settings.redis {
            Some(url) => {
                let (sizes, ttl) =
                    ((settings.chat.history, settings.max_message_size), settings.presence_ttl);
                let mut broker =
                    RedisBroker::new(url.clone(), sizes, ttl, poll.registry(), REDIS_TOKENS, Instant::now())?;
                broker.set_linger(settings.redis_linger);
                Hub::with_broker(settings, Box::new(broker), Instant::now())
            }
            None => Hub::new(settings, Instant::now()),
        };
        if let Some(store) = store {
            hub.attach_store(store).map_err(io::Error::other)?;
        }
        let api_answers = Vec::new();
        Ok(Self {
            poll,
            acceptor,
            signals,
            hub,
            tls,
            metrics,
            api,
            api_answers,
            started_at,
            shutdown_deadline: None,
        })
    }

    /// The metrics listener's address, if `--metrics` was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.local_addr().ok())
    }

    /// The API listener's address, if `--api` was given.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// The page's URL, as the start-up log gives it: with TLS, under a name the certificate
    /// covers (see [`ServerTls::url_host`](crate::tls::server::ServerTls::url_host)).
    fn page_url(&self) -> String {
        let addr = self.local_addr();
        let Some(tls) = &self.hub.settings().tls else { return page_url("http", addr, None) };
        let host = tls.url_host(addr.ip());
        if host.is_none() {
            warn!(
                "the certificate in {} covers neither {} nor localhost: browsers will refuse its URL",
                tls.cert_file.display(),
                addr.ip()
            );
        }
        page_url("https", addr, host.as_deref())
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.acceptor.local_addr()
    }

    /// Runs until SIGINT/SIGTERM, then closes every client with 1001 and returns once they are
    /// gone or `--shutdown-timeout` has passed.
    pub fn run(mut self) -> io::Result<()> {
        // Scripts and tests read the address as the line's last word.
        info!("wschat{} listening on {}", if self.tls.is_some() { " (TLS)" } else { "" }, self.local_addr());
        info!("open {} in a browser to chat", self.page_url());
        if let Some(addr) = self.metrics_addr() {
            info!("metrics at http://{addr}/metrics");
        }
        if let Some(addr) = self.api_addr() {
            info!("HTTP API at http://{addr}/api/");
            info!("admin page at http://{addr}/admin");
        }
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
            // A light turn stops reading a socket at a short read; a busy one reads on, and
            // batches more per write (see `Reading::UntilShort`).
            let light = events.iter().nth(LIGHT_TURN_EVENTS).is_none();
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
                    token if self.metrics.as_ref().is_some_and(|m| m.owns(token)) => {
                        self.scrape(Some(token), now);
                    }
                    token if self.api.as_ref().is_some_and(|a| a.owns(token)) => self.api_event(token, now),
                    token if self.hub.broker().owns(token) => {
                        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                        self.hub.broker_mut().on_event(token, readable, event.is_writable(), now);
                    }
                    Token(key) => {
                        if event.is_writable() {
                            self.hub.on_writable(key);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            let reading = match event.is_read_closed() || event.is_error() {
                                true => Reading::ToEnd,
                                false if light => Reading::UntilShort,
                                false => Reading::Open,
                            };
                            self.hub.on_readable(key, reading, now);
                        }
                    }
                }
            }
            for key in carried {
                self.hub.on_readable(key, Reading::Open, now);
            }
            self.hub.fire_timers(now);
            // The API's calls before the broker's turn, so that those its answers let through
            // (a connection kept alive asks again) leave in this turn's write to Redis.
            self.api_turn(now);
            self.hub.broker_turn(now);
            self.finish_turn(now);
            if let Some(e) = self.hub.store_failure() {
                // Nothing uncommitted was sent; stopping keeps every id clients saw valid.
                return Err(io::Error::other(format!("{e}; stopping")));
            }
            self.scrape(None, now);
            self.hub.counters_mut().turns.record(now.elapsed());
            if self.hub.release_memory_after(RELEASE_AFTER_CROWD) {
                trim_heap();
            }
            if self.acceptor.resume_if_due(now) {
                self.accept_all(now);
                self.finish_turn(now);
            }
            if let Some(deadline) = self.shutdown_deadline {
                if !self.hub.has_sessions() {
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
        let scrape = self.metrics.as_ref().and_then(MetricsEndpoint::next_deadline);
        let api = match self.hub.has_api_answers() {
            true => Some(now),
            false => self.api.as_ref().and_then(ApiEndpoint::next_deadline),
        };
        let redis = self.hub.broker().wake_at(now);
        let next =
            [self.hub.next_wakeup(now), self.acceptor.wake_at(), self.shutdown_deadline, scrape, api, redis]
                .into_iter()
                .flatten()
                .min()?;
        if next <= now {
            return Some(Duration::ZERO);
        }
        // mio rounds a timeout up to whole milliseconds, so a deadline is never woken early and
        // spun on, and a timer (a room's linger among them) is late by under a millisecond.
        Some(next - now)
    }

    fn accept_all(&mut self, now: Instant) {
        while let Some((socket, peer)) = self.acceptor.next(self.hub.len(), now) {
            // Chat lines are small and latency matters more than packet count; the outbox
            // already coalesces everything queued in one turn into one write.
            if let Err(e) = socket.set_nodelay(true) {
                debug!("{peer}: set_nodelay failed: {e}");
            }
            let mut socket = match S::accept(socket, self.tls.as_ref()) {
                Ok(socket) => socket,
                Err(e) => {
                    warn!("{peer}: cannot start the connection: {e}");
                    continue;
                }
            };
            let key = self.hub.vacant_key();
            if let Err(e) = self.poll.registry().register(&mut socket, Token(key), Interest::READABLE) {
                warn!("{peer}: cannot register socket: {e}");
                continue;
            }
            self.hub.admit(socket, peer, now);
        }
    }

    /// A metrics listener or scrape event (`Some(token)`), or the endpoint's timers, run every
    /// turn (`None`): scrapes are served from the hub's counters, in this turn.
    fn scrape(&mut self, token: Option<Token>, now: Instant) {
        let Some(metrics) = &mut self.metrics else {
            return;
        };
        let (hub, started_at, registry) = (&self.hub, self.started_at, self.poll.registry());
        let api = &self.api;
        let render = &mut || hub.render_metrics(started_at, api.as_ref().map(ApiEndpoint::counts));
        match token {
            Some(token) => metrics.on_event(registry, token, now, render),
            None => metrics.on_timers(registry, now, render),
        }
    }

    /// An event on the API listener or one of its connections: its calls go to the hub now.
    fn api_event(&mut self, token: Token, now: Instant) {
        let Some(api) = &mut self.api else { return };
        let hub = &mut self.hub;
        api.on_event(self.poll.registry(), token, now, &mut |ticket, call| hub.api_call(ticket, call, now));
    }

    /// Once a turn, before the broker's: the chat's answers to API calls go out (a connection
    /// kept alive may ask again at once, and be answered at once), and the API's deadlines are
    /// kept. Answers the broker's turn brings wait for the next turn, which comes at once.
    fn api_turn(&mut self, now: Instant) {
        let Some(api) = &mut self.api else { return };
        let (hub, registry) = (&mut self.hub, self.poll.registry());
        api.on_timers(registry, now, &mut |ticket, call| hub.api_call(ticket, call, now));
        loop {
            hub.take_api_answers(&mut self.api_answers);
            if self.api_answers.is_empty() {
                break;
            }
            let local = Local {
                messages: hub.counters_mut().messages_received.iter().sum(),
                linked: hub.broker().linked(),
            };
            for (ticket, answer) in self.api_answers.drain(..) {
                let ask = &mut |ticket, call| hub.api_call(ticket, call, now);
                api.answered(registry, ticket, answer, local, now, ask);
            }
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
        let mut stop = false;
        let mut reload = false;
        for signal in self.signals.pending() {
            info!("received signal {signal}");
            match signal {
                SIGHUP => reload = true,
                _ => stop = true,
            }
        }
        if reload {
            self.reload_certificate();
            self.reload_auth_keys();
            self.reload_api_keys();
        }
        if !stop {
            return false;
        }
        if self.shutdown_deadline.is_some() {
            return true;
        }
        info!("shutting down: closing {} connection(s) with 1001", self.hub.len());
        self.shutdown_deadline = Some(now + self.hub.settings().shutdown_timeout);
        // Still listening while the clients close: a probe or a newcomer is answered 503
        // ("shutting down"), so a balancer takes this process out of rotation, rather than
        // being refused at connect.
        self.hub.shut_down(now);
        self.hub.broker_mut().leave(now);
        false
    }
}

impl<S: Accept> Server<S> {
    /// SIGHUP: the JWT keys are read again; new handshakes and `/token` renewals use them,
    /// signed-in connections are untouched; a key file that cannot be used keeps the old
    /// keys, and says why.
    fn reload_auth_keys(&mut self) {
        let Some(auth) = &self.hub.settings().auth else { return };
        match auth.reload() {
            Ok(auth) => {
                self.hub.set_auth(Arc::new(auth));
                info!("SIGHUP: JWT keys reloaded");
            }
            Err(e) => warn!("SIGHUP: keeping the current JWT keys: {e}"),
        }
    }

    /// SIGHUP: the API keys are read again; a file that cannot be used keeps the old keys, and
    /// says why (never what the keys are).
    fn reload_api_keys(&mut self) {
        let Some(api) = &mut self.api else { return };
        match api.keys().reload() {
            Ok(keys) => {
                info!("SIGHUP: {} API key(s) reloaded", keys.len());
                api.set_keys(keys);
            }
            Err(e) => warn!("SIGHUP: keeping the current API keys: {e}"),
        }
    }

    /// SIGHUP: new connections get the certificate and key now in the files; open ones keep
    /// theirs. Files that cannot be used leave the current certificate in place, and say why.
    fn reload_certificate(&mut self) {
        let Some(files) = &self.hub.settings().tls else {
            info!("SIGHUP: no TLS certificate to reload (started without --tls-cert)");
            return;
        };
        match files.reload() {
            Ok(config) => {
                self.tls = Some(config);
                info!("SIGHUP: TLS certificate reloaded from {}", files.cert_file.display());
            }
            Err(e) => warn!("SIGHUP: keeping the current TLS certificate: {e}"),
        }
    }
}

/// Where a browser on this machine finds the page: the bound address, or loopback when bound
/// to every interface (a browser cannot open `0.0.0.0`).
/// The page's URL on a server bound to `addr`: `https` with a name from its certificate when
/// it speaks TLS (`host`; the address itself otherwise).
fn page_url(scheme: &str, addr: SocketAddr, host: Option<&str>) -> String {
    match host.map(|host| (host, host.parse::<std::net::IpAddr>())) {
        Some((_, Ok(ip))) => return format!("{scheme}://{}/", SocketAddr::new(ip, addr.port())),
        Some((name, Err(_))) => return format!("{scheme}://{name}:{}/", addr.port()),
        None => {}
    }
    let ip = match addr.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    format!("{scheme}://{}/", SocketAddr::new(ip, addr.port()))
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
        let url = |addr: &str| page_url("http", addr.parse().unwrap(), None);
        assert_eq!(url("127.0.0.1:9001"), "http://127.0.0.1:9001/");
        assert_eq!(url("0.0.0.0:80"), "http://127.0.0.1:80/");
        assert_eq!(url("[::]:9001"), "http://[::1]:9001/");
        assert_eq!(url("[::1]:9001"), "http://[::1]:9001/");
        assert_eq!(page_url("https", "0.0.0.0:443".parse().unwrap(), None), "https://127.0.0.1:443/");
        let https = |addr: &str, host| page_url("https", addr.parse().unwrap(), Some(host));
        assert_eq!(https("127.0.0.1:9443", "localhost"), "https://localhost:9443/");
        assert_eq!(https("0.0.0.0:443", "chat.example.com"), "https://chat.example.com:443/");
        assert_eq!(https("127.0.0.1:9443", "127.0.0.1"), "https://127.0.0.1:9443/");
        // The certificate's address, not the one a wildcard bind would suggest.
        assert_eq!(https("[::]:9443", "127.0.0.1"), "https://127.0.0.1:9443/");
        assert_eq!(https("[::]:9443", "::1"), "https://[::1]:9443/");
    }
}
