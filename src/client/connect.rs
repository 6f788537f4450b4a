//! Making one connection for the terminal client: resolve the server, open TCP, then the TLS
//! and WebSocket handshakes, all non-blocking in the `mio` poll that the [`Session`] then
//! keeps. The input thread wakes that poll as it wakes the session's, so Ctrl-C ends an
//! attempt at once, whatever the server answers or fails to; anything else typed meanwhile is
//! held, in order, for the session. Each address gets the connect timeout for TCP and both
//! handshakes together.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Waker};
use rustls::ClientConfig as TlsConfig;
use tungstenite::client::IntoClientRequest;
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::handshake::client::Request;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocketConfig;

use super::resume::without_token;
use super::session::{Inbox, Session, Wakeup, SOCKET, WAKER};
use crate::chat::JSON_SUBPROTOCOL;
use crate::server_url::ServerUrl;
use crate::tls::client::{advice, ClientStream, ClientTls};

/// Why connecting failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// Trying again may help (nothing listening, a timeout, a 5xx refusal): what happened.
    Transient(String),
    /// Trying again cannot help (a 4xx refusal, a host TLS cannot name): what happened.
    Permanent(String),
    /// Ctrl-C.
    Interrupted,
}

/// How one attempt ended short of a session.
enum Failed {
    Error(ConnectError),
    /// The server selected no subprotocol: it has no JSON mode, so ask again without.
    NoJsonMode,
}

impl From<ConnectError> for Failed {
    fn from(error: ConnectError) -> Self {
        Self::Error(error)
    }
}

/// Connects to `server`, requesting `url` (its URL with the client's query), within `timeout`
/// for each of its addresses, over TLS with `tls` for `wss://`. Commands from the input are
/// held in `inbox` meanwhile; Ctrl-C among them ends the attempt.
///
/// JSON mode is asked for (`wschat.json`: ids to resume from, exact forms to show); a server
/// that does not offer it is connected to again without asking, and speaks text lines.
pub fn connect(
    server: &ServerUrl,
    url: &str,
    timeout: Duration,
    tls: &Arc<TlsConfig>,
    inbox: &mut Inbox,
    wakeup: &Wakeup,
) -> Result<Session, ConnectError> {
    let io_error =
        |e: std::io::Error| ConnectError::Transient(format!("cannot wait for the connection: {e}"));
    let poll = Poll::new().map_err(io_error)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(io_error)?);
    wakeup.set(Some(waker.clone()));
    let mut attempt = Attempt { server, url, timeout, poll, events: Events::with_capacity(8), inbox };
    let result = match attempt.asking(tls, true) {
        Err(Failed::NoJsonMode) => attempt.asking(tls, false),
        result => result,
    };
    wakeup.set(None);
    let poll = attempt.poll;
    match result {
        Ok((ws, peer, json)) => Ok(Session::new(ws, poll, waker, peer, json)),
        Err(Failed::Error(error)) => Err(error),
        Err(Failed::NoJsonMode) => Err(ConnectError::Transient(
            "the server chose a subprotocol the client did not ask for".to_string(),
        )),
    }
}

/// What a successful attempt hands over: the socket after the handshake, its peer, and whether
/// the server chose JSON mode.
type Connected = (tungstenite::WebSocket<ClientStream>, SocketAddr, bool);

struct Attempt<'a> {
    server: &'a ServerUrl,
    url: &'a str,
    timeout: Duration,
    poll: Poll,
    events: Events,
    inbox: &'a mut Inbox,
}

impl Attempt<'_> {
    /// Tries each of the server's addresses in turn; the last one's failure if none answers.
    fn asking(&mut self, tls: &Arc<TlsConfig>, ask_json: bool) -> Result<Connected, Failed> {
        let shown = without_token(self.url);
        let mut request = self
            .url
            .into_client_request()
            .map_err(|e| ConnectError::Permanent(format!("invalid URL {shown:?}: {e}")))?;
        if ask_json {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                tungstenite::http::HeaderValue::from_static(JSON_SUBPROTOCOL),
            );
        }
        let host = self.server.host.as_str();
        let tls = match self.server.secure {
            true => Some(
                ClientTls::new(tls.clone(), host)
                    .map_err(|e| ConnectError::Permanent(format!("invalid URL {shown:?}: {e}")))?,
            ),
            false => None,
        };
        let addrs: Vec<SocketAddr> = (host, self.server.port)
            .to_socket_addrs()
            .map_err(|e| ConnectError::Transient(format!("cannot resolve {host}: {e}")))?
            .collect();
        let mut last = Failed::Error(ConnectError::Transient(format!("{host} has no addresses")));
        for addr in addrs {
            let deadline = Instant::now() + self.timeout;
            let result =
                self.open(addr, deadline).and_then(|tcp| self.handshake(tcp, addr, &request, &tls, deadline));
            match result {
                Err(Failed::Error(ConnectError::Transient(why))) => {
                    last = Failed::Error(ConnectError::Transient(why))
                }
                result => return result,
            }
        }
        Err(last)
    }

    /// Opens TCP to `addr`, registered with the poll, by `deadline`.
    fn open(&mut self, addr: SocketAddr, deadline: Instant) -> Result<TcpStream, Failed> {
        let failed = |e: std::io::Error| {
            Failed::Error(ConnectError::Transient(format!("cannot connect to {addr}: {e}")))
        };
        let mut tcp = TcpStream::connect(addr).map_err(failed)?;
        self.poll
            .registry()
            .register(&mut tcp, SOCKET, Interest::READABLE | Interest::WRITABLE)
            .map_err(failed)?;
        loop {
            if !self.wait(deadline)? {
                return Err(failed(ErrorKind::TimedOut.into()));
            }
            // Writable means connected, or failed (mio's way of finishing a non-blocking connect).
            if let Some(e) = tcp.take_error().map_err(failed)? {
                return Err(failed(e));
            }
            match tcp.peer_addr() {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::NotConnected => continue,
                Err(e) => return Err(failed(e)),
            }
        }
        // Nagle would hold typed lines behind unacknowledged ones.
        tcp.set_nodelay(true).map_err(failed)?;
        Ok(tcp)
    }

    /// The TLS handshake (for `wss://`) and the WebSocket one, by `deadline`.
    fn handshake(
        &mut self,
        tcp: TcpStream,
        peer: SocketAddr,
        request: &Request,
        tls: &Option<ClientTls>,
        deadline: Instant,
    ) -> Result<Connected, Failed> {
        let stream = ClientStream::new(tcp, tls.as_ref())
            .map_err(|e| ConnectError::Permanent(format!("cannot start TLS: {e}")))?;
        let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
        let mut round = tungstenite::client::client_with_config(request.clone(), stream, Some(config));
        loop {
            match round {
                Ok((ws, response)) => {
                    let json = response
                        .headers()
                        .get("Sec-WebSocket-Protocol")
                        .is_some_and(|p| p == JSON_SUBPROTOCOL);
                    return Ok((ws, peer, json));
                }
                Err(HandshakeError::Interrupted(mut mid)) => {
                    // TLS output the socket could not take yet (a plain socket holds none).
                    let _ = mid.get_mut().get_mut().flush();
                    if !self.wait(deadline)? {
                        return Err(ConnectError::Transient(format!(
                            "{peer} did not complete the handshake within {:?}",
                            self.timeout
                        ))
                        .into());
                    }
                    round = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(failure(e, peer)),
            }
        }
    }

    /// Waits for the socket until `deadline` (false when it passed), holding what the input
    /// sends meanwhile; Ctrl-C among it ends the attempt.
    fn wait(&mut self, deadline: Instant) -> Result<bool, Failed> {
        loop {
            if self.inbox.hold_arrivals() {
                return Err(ConnectError::Interrupted.into());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            match self.poll.poll(&mut self.events, Some(deadline - now)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(ConnectError::Transient(format!("cannot wait for the connection: {e}")).into())
                }
            }
            if self.events.iter().any(|event| event.token() == SOCKET) {
                return Ok(true);
            }
        }
    }
}

/// What a failed WebSocket handshake means for the user, and for trying again.
fn failure(error: WsError, peer: SocketAddr) -> Failed {
    match error {
        // A server without JSON mode (tungstenite refuses a reply that selects no subprotocol).
        WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(_)) => Failed::NoJsonMode,
        WsError::Http(response) => {
            let status = response.status();
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            let message = format!("server refused the connection: {status}: {}", body.trim());
            // 5xx (the server is full, say) may pass; 4xx is about this request.
            Failed::Error(if status.is_server_error() {
                ConnectError::Transient(message)
            } else {
                ConnectError::Permanent(message)
            })
        }
        // A TLS failure the user can mend says how (rustls's own words only name it).
        WsError::Io(e) => {
            let why = advice(&e).unwrap_or_else(|| e.to_string());
            Failed::Error(ConnectError::Transient(format!("handshake with {peer} failed: {why}")))
        }
        e => Failed::Error(ConnectError::Transient(format!("handshake with {peer} failed: {e}"))),
    }
}
