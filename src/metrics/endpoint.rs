//! The metrics listener (`--metrics ADDR`): a second listening socket in the server's poll, on
//! its own address so the public never reaches it, answering `GET /metrics` (and `HEAD`) with
//! the current exposition, 404 for any other path, 405 for any other method. Its connections
//! are few and short: at most [`MAX_SCRAPES`](super::slots::MAX_SCRAPES), each closed once its reply is written, and a
//! request head is at most [`MAX_REQUEST`] bytes. Which connections are kept, evicted or timed
//! out is `slots.rs`'s policy, the listener and its slots `side.rs`'s; this file reads the
//! requests and writes the replies.
//!
//! The loop drives the deadlines: [`next_deadline`](MetricsEndpoint::next_deadline) bounds its
//! wait, and [`on_timers`](MetricsEndpoint::on_timers) runs every turn. What a client can
//! trigger at will (evictions, timeouts, a full listener) is logged with `remote_warn!`, so a
//! flood of connections cannot flood the log; accept failures (EMFILE) pause accepting as on
//! the chat's listener ([`AcceptPause`]).

use std::io::{self, ErrorKind, Read};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::side::{write_some, SideConnection, SideListener};
use super::slots::SCRAPES;

/// Largest request head accepted.
pub const MAX_REQUEST: usize = 8192;

/// What Prometheus and OpenMetrics scrapers are told the body is.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The listener and its open scrape connections.
pub struct MetricsEndpoint {
    side: SideListener<Scrape>,
}

struct Scrape {
    stream: TcpStream,
    peer: SocketAddr,
    request: Vec<u8>,
    /// The reply and how much of it is written.
    reply: Option<(Vec<u8>, usize)>,
}

impl SideConnection for Scrape {
    fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    fn peer(&self) -> SocketAddr {
        self.peer
    }
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
        let naming = ("metrics: ", Interest::READABLE);
        Ok(Self { side: SideListener::bind(addr, registry, (listener_token, first_token), SCRAPES, naming)? })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.side.local_addr()
    }

    /// Whether an event with this token is the endpoint's.
    pub fn owns(&self, token: Token) -> bool {
        self.side.owns(token)
    }

    /// When [`on_timers`](Self::on_timers) has something to do: a scrape's deadline, or the
    /// end of a pause in accepting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.side.next_deadline()
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
        match self.side.key_of(token) {
            Some(key) => self.serve(registry, key, now, render),
            None => self.accept(registry, now, render),
        }
    }

    /// Closes scrapes past their deadline, and accepts again once a pause is over.
    pub fn on_timers(&mut self, registry: &Registry, now: Instant, render: &mut dyn FnMut() -> String) {
        self.side.close_expired(registry, now);
        if self.side.resume_if_due(now) {
            self.accept(registry, now, render);
        }
    }

    /// Accepts every connection waiting, making room for each, and reads each at once: a
    /// scraper's request is usually there already, and once it is being answered it cannot be
    /// evicted by the connections accepted after it.
    fn accept(&mut self, registry: &Registry, now: Instant, render: &mut dyn FnMut() -> String) {
        let scrape = |stream, peer| Scrape { stream, peer, request: Vec::new(), reply: None };
        while let Some(admitted) = self.side.accept_next(registry, now, scrape) {
            if let Some(key) = admitted {
                self.serve(registry, key, now, render);
            }
        }
    }

    fn serve(&mut self, registry: &Registry, key: usize, now: Instant, render: &mut dyn FnMut() -> String) {
        let Some(scrape) = self.side.slots.get_mut(key) else {
            return;
        };
        if scrape.reply.is_none() {
            match read_request(scrape) {
                Ok(Some(asked)) => scrape.reply = Some((reply_for(asked, render), 0)),
                Ok(None) => return,
                Err(_) => return self.side.close(registry, key, now),
            }
            self.side.slots.answering(key, now);
        }
        let token = self.side.token_of(key);
        let Some(scrape) = self.side.slots.get_mut(key) else {
            return;
        };
        let Some((reply, written)) = &mut scrape.reply else { return };
        match write_some(&mut scrape.stream, reply, written) {
            Ok(false) => {
                if registry.reregister(&mut scrape.stream, token, Interest::WRITABLE).is_err() {
                    self.side.close(registry, key, now);
                }
            }
            Ok(true) | Err(_) => self.side.close(registry, key, now),
        }
    }
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
