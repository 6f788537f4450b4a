//! The metrics listener (`--metrics ADDR`): a second listening socket in the server's poll, on
//! its own address so the public never reaches it, answering `GET /metrics` (and `HEAD`) with
//! the current exposition, 404 for any other path, 405 for any other method. Its connections
//! are few and short: at most [`MAX_SCRAPES`] at once, each given [`SCRAPE_TIMEOUT`] to send a
//! request of at most [`MAX_REQUEST`] bytes and take the reply; then it is closed.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

/// Scrapes served at once; more are closed at accept.
pub const MAX_SCRAPES: usize = 16;
/// Time a scrape connection has to send its request and take the reply.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
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
    scrapes: Slab<Scrape>,
}

struct Scrape {
    stream: TcpStream,
    request: Vec<u8>,
    /// The reply and how much of it is written.
    reply: Option<(Vec<u8>, usize)>,
    deadline: Instant,
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
        Ok(Self { listener, listener_token, first_token, scrapes: Slab::with_capacity(MAX_SCRAPES) })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether an event with this token is the endpoint's.
    pub fn owns(&self, token: Token) -> bool {
        token == self.listener_token || (self.first_token..self.first_token + MAX_SCRAPES).contains(&token.0)
    }

    /// When the oldest scrape times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.scrapes.iter().map(|(_, s)| s.deadline).min()
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
            self.accept(registry, now);
        } else {
            self.serve(registry, token.0 - self.first_token, render);
        }
    }

    /// Closes scrapes past their deadline.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        let late: Vec<usize> =
            self.scrapes.iter().filter(|(_, s)| s.deadline <= now).map(|(k, _)| k).collect();
        for key in late {
            debug!("metrics: scrape #{key} timed out");
            self.close(registry, key);
        }
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("metrics: accept failed: {e}");
                    return;
                }
            };
            if self.scrapes.len() >= MAX_SCRAPES {
                warn!("metrics: {peer}: {MAX_SCRAPES} scrapes already open; closing");
                continue;
            }
            let key = self.scrapes.vacant_key();
            if registry.register(&mut stream, Token(self.first_token + key), Interest::READABLE).is_err() {
                continue;
            }
            self.scrapes.insert(Scrape {
                stream,
                request: Vec::new(),
                reply: None,
                deadline: now + SCRAPE_TIMEOUT,
            });
        }
    }

    fn serve(&mut self, registry: &Registry, key: usize, render: &mut dyn FnMut() -> String) {
        let Some(scrape) = self.scrapes.get_mut(key) else {
            return;
        };
        if scrape.reply.is_none() {
            match read_request(scrape) {
                Ok(Some(reply)) => scrape.reply = Some((reply_for(reply, render), 0)),
                Ok(None) => return,
                Err(_) => return self.close(registry, key),
            }
        }
        let Some((reply, written)) = &mut scrape.reply else {
            return;
        };
        while *written < reply.len() {
            match scrape.stream.write(&reply[*written..]) {
                Ok(0) => return self.close(registry, key),
                Ok(n) => *written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let token = Token(self.first_token + key);
                    if registry.reregister(&mut scrape.stream, token, Interest::WRITABLE).is_err() {
                        self.close(registry, key);
                    }
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(registry, key),
            }
        }
        self.close(registry, key);
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        if let Some(mut scrape) = self.scrapes.try_remove(key) {
            let _ = registry.deregister(&mut scrape.stream);
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
