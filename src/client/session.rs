//! One connection of the terminal client: connect and handshake (blocking, bounded by a
//! timeout), then a small `mio` loop that prints what the server sends and sends what the user
//! types, until the connection ends.
//!
//! The input side lives on another thread; it queues [`Command`]s and wakes this loop with a
//! `mio::Waker`, so one thread owns the socket and nothing is polled on a timer.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream as StdStream, ToSocketAddrs};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use tungstenite::client::IntoClientRequest;
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::display::Output;
use rustls::ClientConfig as TlsConfig;

use super::resume::{without_token, Resume};
use crate::chat::{Event, ServerLine, JSON_SUBPROTOCOL};
use crate::server_url::ServerUrl;
use crate::tls::client::{ClientStream, ClientTls};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// What the input side asks of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send one line as a text message.
    Line(String),
    /// Send bytes as one binary message.
    Binary(Vec<u8>),
    /// The user is done. With `wait_for_ack` (scripted input), first make sure the server has
    /// processed everything sent (a ping answered), then close; otherwise close at once.
    Finish { wait_for_ack: bool },
}

/// Lets the input thread wake whichever session is current (there is none while reconnecting).
#[derive(Clone, Default)]
pub struct Wakeup(Arc<Mutex<Option<Arc<Waker>>>>);

impl Wakeup {
    pub fn wake(&self) {
        if let Ok(slot) = self.0.lock() {
            if let Some(waker) = slot.as_ref() {
                let _ = waker.wake();
            }
        }
    }

    fn set(&self, waker: Option<Arc<Waker>>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = waker;
        }
    }
}

/// Why connecting failed, and whether trying again could help.
#[derive(Debug)]
pub struct ConnectError {
    pub message: String,
    /// A bad URL or a 4xx refusal will not change by retrying.
    pub permanent: bool,
    /// The server selected no subprotocol: it has no JSON mode.
    no_subprotocol: bool,
}

impl ConnectError {
    fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: true, no_subprotocol: false }
    }

    fn transient(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: false, no_subprotocol: false }
    }
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A clean close handshake with code 1000, started by either side.
    Normal { reason: String },
    /// A close handshake with another code (1001 server shutdown, 1008 too slow, 1009...).
    Closed { code: u16, reason: String },
    /// The connection broke without a close handshake.
    Lost(String),
}

/// An open connection, handshake done.
pub struct Session {
    ws: WebSocket<ClientStream>,
    poll: Poll,
    waker: Arc<Waker>,
    pub peer: SocketAddr,
    /// Who sent the binary message about to arrive, from the line the server sends before it.
    binary_from: Option<String>,
    /// The server chose JSON mode (`wschat.json`): frames are events, not lines.
    json: bool,
    /// Showing a room's replayed history (JSON mode: the client draws the markers a text
    /// client gets from the server).
    replaying: bool,
}

/// Resolves `server`, connects within `timeout` and performs the WebSocket handshake, over TLS
/// with `tls` for a `wss://` URL, requesting `url` (the server's URL with the client's query).
/// JSON mode is asked for (`wschat.json`: ids to resume from, exact forms to show); a server
/// that does not offer it is connected to again without asking, and speaks text lines.
pub fn connect(
    server: &ServerUrl,
    url: &str,
    timeout: Duration,
    tls: &Arc<TlsConfig>,
) -> Result<Session, ConnectError> {
    match connect_asking(server, url, timeout, tls, true) {
        Err(e) if e.no_subprotocol => connect_asking(server, url, timeout, tls, false),
        result => result,
    }
}

fn connect_asking(
    server: &ServerUrl,
    url: &str,
    timeout: Duration,
    tls: &Arc<TlsConfig>,
    ask_json: bool,
) -> Result<Session, ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::permanent(format!("invalid URL {:?}: {e}", without_token(url))))?;
    if ask_json {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", tungstenite::http::HeaderValue::from_static(JSON_SUBPROTOCOL));
    }
    let host = server.host.as_str();
    let tls = match server.secure {
        true => Some(
            ClientTls::new(tls.clone(), host)
                .map_err(|e| ConnectError::permanent(format!("invalid URL {:?}: {e}", without_token(url))))?,
        ),
        false => None,
    };
    let addrs: Vec<SocketAddr> = (host, server.port)
        .to_socket_addrs()
        .map_err(|e| ConnectError::transient(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last_error = ConnectError::transient(format!("{host} has no addresses"));
    for addr in addrs {
        match StdStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return handshake(stream, addr, request, timeout, tls),
            Err(e) => last_error = ConnectError::transient(format!("cannot connect to {addr}: {e}")),
        }
    }
    Err(last_error)
}

fn handshake(
    stream: StdStream,
    peer: SocketAddr,
    request: tungstenite::handshake::client::Request,
    timeout: Duration,
    tls: Option<ClientTls>,
) -> Result<Session, ConnectError> {
    let io_error = |e: io::Error| ConnectError::transient(format!("connection to {peer} failed: {e}"));
    // Blocking, but never longer than `timeout` per read or write.
    stream.set_read_timeout(Some(timeout)).map_err(io_error)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_error)?;
    stream.set_nodelay(true).map_err(io_error)?;
    let stream = TcpStream::from_std(stream);
    // The TLS handshake happens inside the WebSocket handshake's first reads and writes, on
    // the same blocking socket.
    let stream = ClientStream::new(stream, tls.as_ref())
        .map_err(|e| ConnectError::permanent(format!("cannot start TLS: {e}")))?;
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
    let (mut ws, json) = match tungstenite::client::client_with_config(request, stream, Some(config)) {
        Ok((ws, response)) => {
            let json =
                response.headers().get("Sec-WebSocket-Protocol").is_some_and(|p| p == JSON_SUBPROTOCOL);
            (ws, json)
        }
        // A server without JSON mode (tungstenite refuses a reply that selects no subprotocol).
        Err(HandshakeError::Failure(WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(_)))) => {
            let mut error = ConnectError::transient("the server does not offer wschat.json");
            error.no_subprotocol = true;
            return Err(error);
        }
        Err(HandshakeError::Interrupted(_)) => {
            return Err(ConnectError::transient(format!(
                "{peer} did not complete the handshake within {timeout:?}"
            )))
        }
        Err(HandshakeError::Failure(WsError::Http(response))) => {
            let status = response.status();
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            let message = format!("server refused the connection: {status}: {}", body.trim());
            // 5xx (the server is full, say) may pass; 4xx is about this request.
            return Err(if status.is_server_error() {
                ConnectError::transient(message)
            } else {
                ConnectError::permanent(message)
            });
        }
        Err(HandshakeError::Failure(e)) => {
            return Err(ConnectError::transient(format!("handshake with {peer} failed: {e}")))
        }
    };
    socket2::SockRef::from(ws.get_ref().tcp()).set_nonblocking(true).map_err(io_error)?;
    let poll = Poll::new().map_err(io_error)?;
    poll.registry()
        .register(ws.get_mut(), SOCKET, Interest::READABLE | Interest::WRITABLE)
        .map_err(io_error)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(io_error)?);
    Ok(Session { ws, poll, waker, peer, binary_from: None, json, replaying: false })
}

/// Per-session progress of closing.
#[derive(Default)]
struct Closing {
    /// Payload of the ping whose pong means "the server has processed everything".
    awaiting_ack: Option<(Bytes, Instant)>,
    /// When we sent our close frame, the time by which the server must answer.
    close_deadline: Option<Instant>,
    /// The close frame the server sent, if any.
    received: Option<(u16, String)>,
}

impl Session {
    /// Runs until the connection ends. `close_timeout` bounds waiting for the acknowledgement
    /// of scripted input and for the server's reply to our close.
    pub fn run(
        mut self,
        commands: &Receiver<Command>,
        wakeup: &Wakeup,
        out: &dyn Output,
        close_timeout: Duration,
        resume: &mut Resume,
    ) -> Ending {
        wakeup.set(Some(self.waker.clone()));
        let ending = self.event_loop(commands, out, close_timeout, resume);
        wakeup.set(None);
        ending
    }

    fn event_loop(
        &mut self,
        commands: &Receiver<Command>,
        out: &dyn Output,
        close_timeout: Duration,
        resume: &mut Resume,
    ) -> Ending {
        let mut events = Events::with_capacity(16);
        let mut closing = Closing::default();
        loop {
            // The handshake may have read the first messages already, so read before polling.
            if let Some(ending) = self.read_all(out, &mut closing, close_timeout, resume) {
                return ending;
            }
            self.take_commands(commands, &mut closing, close_timeout, resume);
            match self.ws.flush() {
                Ok(()) => {}
                Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return ending_of_error(e, &closing),
            }
            let now = Instant::now();
            if let Some((_, by)) = &closing.awaiting_ack {
                if now >= *by {
                    out.status("no acknowledgement from the server in time; closing anyway");
                    closing.awaiting_ack = None;
                    self.start_close(&mut closing, close_timeout);
                    continue;
                }
            }
            if closing.close_deadline.is_some_and(|by| now >= by) {
                return Ending::Lost(format!("the server did not answer the close within {close_timeout:?}"));
            }
            let deadline = closing.awaiting_ack.as_ref().map(|(_, by)| *by).or(closing.close_deadline);
            let timeout = deadline.map(|by| by.saturating_duration_since(now) + Duration::from_millis(1));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != ErrorKind::Interrupted {
                    return Ending::Lost(format!("poll failed: {e}"));
                }
            }
        }
    }

    /// Reads and shows every message available; returns how the session ended, if it did.
    fn read_all(
        &mut self,
        out: &dyn Output,
        closing: &mut Closing,
        close_timeout: Duration,
        resume: &mut Resume,
    ) -> Option<Ending> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) if self.json => match Event::from_json(text.as_str()) {
                    Some(event) => self.show(event, out, resume),
                    None => out.message(text.as_str()),
                },
                Ok(Message::Text(text)) => match ServerLine::parse(text.as_str()) {
                    ServerLine::BinaryFrom { nick, .. } => self.binary_from = Some(nick.to_string()),
                    _ => out.message(text.as_str()),
                },
                Ok(Message::Binary(data)) => out.binary(data.len(), self.binary_from.take().as_deref()),
                Ok(Message::Pong(payload)) => {
                    if closing.awaiting_ack.as_ref().is_some_and(|(id, _)| *id == payload) {
                        closing.awaiting_ack = None;
                        self.start_close(closing, close_timeout);
                    }
                }
                Ok(Message::Close(frame)) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((u16::from(CloseCode::Status), String::new()));
                    // Our own close answered, or the server's close (tungstenite queues the reply).
                    if closing.close_deadline.is_none() {
                        closing.received = Some((code, reason));
                    }
                }
                Ok(_) => {}
                Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(WsError::Io(e)) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Some(ending_of_error(e, closing)),
            }
        }
    }

    /// Shows one event as the line a text-mode client would get, and notes what resuming
    /// needs (the room, the last id, a gap in a replay).
    fn show(&mut self, mut event: Event, out: &dyn Output, resume: &mut Resume) {
        if let Some(gap) = resume.note(&event) {
            out.status(&gap);
        }
        match &mut event {
            Event::Message(message) if message.replay && !self.replaying => {
                self.replaying = true;
                if let Some(start) = (Event::ReplayStart { room: message.room.clone() }).text() {
                    out.message(&start);
                }
            }
            Event::Replayed { .. } => self.replaying = false,
            Event::Expired => {
                if let Some(token) = resume.fresh_token() {
                    out.status("session expired: sending the new token from the token file");
                    let _ = self.ws.send(Message::text(format!("/token {token}")));
                    return;
                }
            }
            Event::BinaryFrom { from, .. } => {
                self.binary_from = Some(from.to_string());
                return;
            }
            // Our own copy of a private message we sent (unless sent to ourselves).
            Event::Private { from, to, outgoing, .. } => *outgoing = resume.is_me(from) && from != to,
            _ => {}
        }
        if let Some(line) = event.text() {
            out.message(&line);
        }
    }

    fn take_commands(
        &mut self,
        commands: &Receiver<Command>,
        closing: &mut Closing,
        close_timeout: Duration,
        resume: &mut Resume,
    ) {
        loop {
            let command = match commands.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Empty) => return,
                // The input side is gone without saying so: finish as if told to.
                Err(TryRecvError::Disconnected) => Command::Finish { wait_for_ack: true },
            };
            if closing.close_deadline.is_some() || closing.awaiting_ack.is_some() {
                return;
            }
            let sent = match command {
                Command::Line(line) => {
                    // A token typed by hand is the one to reconnect with, too.
                    if let Some(token) = line.trim().strip_prefix("/token ") {
                        resume.token = Some(token.trim().to_string());
                    }
                    self.ws.write(Message::text(line))
                }
                Command::Binary(data) => self.ws.write(Message::binary(data)),
                Command::Finish { wait_for_ack: true } => {
                    let id = Bytes::from(format!("wschat-client-ack-{}", std::process::id()));
                    closing.awaiting_ack = Some((id.clone(), Instant::now() + close_timeout));
                    self.ws.write(Message::Ping(id))
                }
                Command::Finish { wait_for_ack: false } => {
                    self.start_close(closing, close_timeout);
                    Ok(())
                }
            };
            if let Err(e) = sent {
                // Closing already, or the buffer is full; the loop notices a dead connection.
                log::debug!("not sent: {e}");
            }
        }
    }

    fn start_close(&mut self, closing: &mut Closing, close_timeout: Duration) {
        if closing.close_deadline.is_some() {
            return;
        }
        closing.close_deadline = Some(Instant::now() + close_timeout);
        let frame = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
        let _ = self.ws.close(Some(frame));
    }
}

fn ending_of_error(error: WsError, closing: &Closing) -> Ending {
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed => match &closing.received {
            // The server closed first.
            Some((1000, reason)) => Ending::Normal { reason: reason.clone() },
            Some((code, reason)) => Ending::Closed { code: *code, reason: reason.clone() },
            // We closed first and the server answered.
            None => Ending::Normal { reason: "bye".to_string() },
        },
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            Ending::Lost("the server dropped the connection without a close".to_string())
        }
        WsError::Io(e) => Ending::Lost(format!("connection lost: {e}")),
        other => Ending::Lost(format!("protocol error: {other}")),
    }
}
