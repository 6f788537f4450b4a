//! The metrics listener (`--metrics ADDR`): a second listening socket in the server's poll, on
//! its own address so the public never reaches it, answering `GET /metrics` (and `HEAD`) with
//! the current exposition, 404 for any other path, 405 for any other method. Its connections
//! are few and short: at most [`MAX_SCRAPES`], each closed once its reply is written, and a
//! request head is at most [`MAX_REQUEST`] bytes. Which connections are kept, evicted or timed
//! out is `slots.rs`'s policy; this file does their IO.
//!
//! The loop drives the deadlines: [`next_deadline`](MetricsEndpoint::next_deadline) bounds its
//! wait, and [`on_timers`](MetricsEndpoint::on_timers) runs every turn. What a client can
//! trigger at will (evictions, timeouts, a full listener) is logged with `remote_warn!`, so a
//! flood of connections cannot flood the log; accept failures (EMFILE) pause accepting as on
//! the chat's listener ([`AcceptPause`]).

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use log::debug;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::slots::{Room, Slots, HEAD_TIMEOUT, MAX_SCRAPES, REPLY_TIMEOUT, SCRAPES};
use crate::remote_warn;
use crate::server::acceptor::AcceptPause;

/// Largest request head accepted.
pub const MAX_REQUEST: usize = 8192;

/// What Prometheus and OpenMetrics scrapers are told the body is.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The listener and its open scrape connections.
pub struct MetricsEndpoint {
    listener: TcpListener,
    listener_token: Token,
    /// Scrape connections use the tokens `first_token ..= first_token + MAX_SCRAPES - 1`.
    first_token: usize,
    scrapes: Slots<Scrape>,
    pause: AcceptPause,
}

struct Scrape {
    stream: TcpStream,
    peer: SocketAddr,
    request: Vec<u8>,
    /// The reply and how much of it is written.
    reply: Option<(Vec<u8>, usize)>,
}

impl MetricsEndpoint {
    /// Listens on `addr`, registered under `listener_token`; scrapes get tokens from
    /// `first_token` on.
    pub fn bind(
        addr: SocketAddr,
        registry: &Registry,
        listener_token: Token,
        first_token: usize,
    ) -> io::Result<Self> {
        let mut listener = TcpListener::bind(addr)?;
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        let (scrapes, pause) = (Slots::new(SCRAPES), AcceptPause::new("metrics: "));
        Ok(Self { listener, listener_token, first_token, scrapes, pause })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether an event with this token is the endpoint's.
    pub fn owns(&self, token: Token) -> bool {
        token == self.listener_token || (self.first_token..self.first_token + MAX_SCRAPES).contains(&token.0)
    }

    /// When [`on_timers`](Self::on_timers) has something to do: a scrape's deadline, or the
    /// end of a pause in accepting.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.scrapes.next_deadline(), self.pause.wake_at()].into_iter().flatten().min()
    }

    /// Handles a readiness event for the listener or a scrape; `render` makes the exposition
    /// when a scrape asks for it.
    pub fn on_event(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
        render: &mut dyn FnMut() -> String,
    ) {
        if token == self.listener_token {
            self.accept(registry, now, render);
        } else {
            self.serve(registry, token.0 - self.first_token, now, render);
        }
    }

    /// Closes scrapes past their deadline, and accepts again once a pause is over (the
    /// listener's readiness is edge-triggered: no event will come for connections already
    /// waiting).
    pub fn on_timers(&mut self, registry: &Registry, now: Instant, render: &mut dyn FnMut() -> String) {
        while let Some((mut scrape, answering)) = self.scrapes.pop_expired(now) {
            if answering {
                remote_warn!("metrics: {}: reply not taken within {REPLY_TIMEOUT:?}; closing", scrape.peer);
            } else {
                remote_warn!("metrics: {}: no request within {HEAD_TIMEOUT:?}; closing", scrape.peer);
            }
            self.release(registry, &mut scrape, now);
        }
        if self.pause.resume_if_due(now) {
            self.accept(registry, now, render);
        }
    }

    /// Accepts every connection waiting, making room for each, and reads each at once: a
    /// scraper's request is usually there already, and once it is being answered it cannot be
    /// evicted by the connections accepted after it.
    fn accept(&mut self, registry: &Registry, now: Instant, render: &mut dyn FnMut() -> String) {
        while let Some((mut stream, peer)) = self.pause.accept(&self.listener, now) {
            match self.scrapes.make_room() {
                Room::Free => {}
                Room::Evicted(mut idle) => {
                    remote_warn!("metrics: {}: no request yet; closed to make room for {peer}", idle.peer);
                    self.release(registry, &mut idle, now);
                }
                Room::Full => {
                    remote_warn!("metrics: {peer}: {MAX_SCRAPES} scrapes being answered; closing");
                    continue;
                }
            }
            let token = Token(self.first_token + self.scrapes.vacant_key());
            if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
                debug!("metrics: {peer}: cannot register: {e}");
                continue;
            }
            let key = self.scrapes.admit(Scrape { stream, peer, request: Vec::new(), reply: None }, now);
            self.serve(registry, key, now, render);
        }
    }

    fn serve(&mut self, registry: &Registry, key: usize, now: Instant, render: &mut dyn FnMut() -> String) {
        let Some(scrape) = self.scrapes.get_mut(key) else {
            return;
        };
        if scrape.reply.is_none() {
            match read_request(scrape) {
                Ok(Some(asked)) => scrape.reply = Some((reply_for(asked, render), 0)),
                Ok(None) => return,
                Err(_) => return self.close(registry, key, now),
            }
            self.scrapes.answering(key, now);
        }
        let Some(scrape) = self.scrapes.get_mut(key) else {
            return;
        };
        match write_reply(scrape) {
            Ok(false) => {
                let token = Token(self.first_token + key);
                if registry.reregister(&mut scrape.stream, token, Interest::WRITABLE).is_err() {
                    self.close(registry, key, now);
                }
            }
            Ok(true) | Err(_) => self.close(registry, key, now),
        }
    }

    fn close(&mut self, registry: &Registry, key: usize, now: Instant) {
        if let Some(mut scrape) = self.scrapes.remove(key) {
            self.release(registry, &mut scrape, now);
        }
    }

    /// Deregisters a scrape taken out of its slot (dropping it closes the socket); its
    /// descriptor is free, so a pause for lack of descriptors ends.
    fn release(&mut self, registry: &Registry, scrape: &mut Scrape, now: Instant) {
        let _ = registry.deregister(&mut scrape.stream);
        self.pause.room_made(now);
    }
}

/// Writes what the socket takes of the reply: true once it is all written, false when the
/// socket is full.
fn write_reply(scrape: &mut Scrape) -> io::Result<bool> {
    let Some((reply, written)) = &mut scrape.reply else {
        return Ok(true);
    };
    while *written < reply.len() {
        match scrape.stream.write(&reply[*written..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What a complete request asks for.
enum Asked {
    Metrics { head_only: bool },
    NotFound,
    WrongMethod,
    Malformed,
}

/// Reads what the socket has; `Some` once the request head is complete (or cannot be).
fn read_request(scrape: &mut Scrape) -> io::Result<Option<Asked>> {
    let mut chunk = [0u8; 1024];
    loop {
        match scrape.stream.read(&mut chunk) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => scrape.request.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        return Ok(Some(match request.parse(&scrape.request) {
            Ok(httparse::Status::Partial) if scrape.request.len() < MAX_REQUEST => continue,
            Ok(httparse::Status::Complete(_)) => match (request.method, request.path) {
                (Some(method @ ("GET" | "HEAD")), Some(path))
                    if path.split('?').next() == Some("/metrics") =>
                {
                    Asked::Metrics { head_only: method == "HEAD" }
                }
                (Some("GET" | "HEAD"), _) => Asked::NotFound,
                _ => Asked::WrongMethod,
            },
            _ => Asked::Malformed,
        }));
    }
}

fn reply_for(asked: Asked, render: &mut dyn FnMut() -> String) -> Vec<u8> {
    let (status, content_type, body, head_only, extra) = match asked {
        Asked::Metrics { head_only } => ("200 OK", CONTENT_TYPE, render(), head_only, ""),
        Asked::NotFound => {
            ("404 Not Found", "text/plain", "only /metrics is served here\n".into(), false, "")
        }
        Asked::WrongMethod => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n".into(),
            false,
            "Allow: GET, HEAD\r\n",
        ),
        Asked::Malformed => ("400 Bad Request", "text/plain", "malformed request\n".into(), false, ""),
    };
    let mut reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        reply.extend_from_slice(body.as_bytes());
    }
    reply
}
