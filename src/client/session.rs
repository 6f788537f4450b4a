//! One connection of the terminal client, once made ([`super::connect`] makes it): a small
//! `mio` loop that prints what the server sends and sends what the user types, until the
//! connection ends.
//!
//! The input side lives on another thread; it queues [`Command`]s and wakes this loop with a
//! `mio::Waker`, so one thread owns the socket and nothing is polled on a timer. The
//! [`Inbox`] is the connection's end of that queue, the same while connecting and after.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Events, Poll, Token, Waker};
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use super::display::{classify, LineKind, Output};
use super::resume::Resume;
use crate::chat::{Event, ServerLine};
use crate::tls::client::ClientStream;

/// The poll's tokens, the same while connecting ([`super::connect`]) and after.
pub(super) const SOCKET: Token = Token(0);
pub(super) const WAKER: Token = Token(1);

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
    /// Ctrl-C on the terminal: a connection closes at once, as for `Finish`; before one is
    /// made, the client ends (status 130).
    Interrupt,
}

/// The input's commands on the connection's side. What arrives while connecting is held, in
/// order, for the session; only Ctrl-C is acted on at once.
pub struct Inbox {
    receiver: Receiver<Command>,
    held: VecDeque<Command>,
}

impl Inbox {
    pub fn new(receiver: Receiver<Command>) -> Self {
        Self { receiver, held: VecDeque::new() }
    }

    /// Holds every command that has arrived; true if Ctrl-C is among them.
    pub fn hold_arrivals(&mut self) -> bool {
        self.held.extend(self.receiver.try_iter());
        self.held.contains(&Command::Interrupt)
    }

    /// The next command, held ones first, without waiting.
    fn try_next(&mut self) -> Result<Command, TryRecvError> {
        self.held.pop_front().map_or_else(|| self.receiver.try_recv(), Ok)
    }

    /// The next command, held ones first, waiting at most `timeout`.
    pub fn next_within(&mut self, timeout: Duration) -> Result<Command, RecvTimeoutError> {
        self.held.pop_front().map_or_else(|| self.receiver.recv_timeout(timeout), Ok)
    }
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

    pub(super) fn set(&self, waker: Option<Arc<Waker>>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = waker;
        }
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
    /// Showing a page of `/history`, likewise.
    paging: bool,
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
    /// A session on a connection whose handshake is done, registered as [`SOCKET`] in `poll`.
    pub(super) fn new(
        ws: WebSocket<ClientStream>,
        poll: Poll,
        waker: Arc<Waker>,
        peer: SocketAddr,
        json: bool,
    ) -> Self {
        Self { ws, poll, waker, peer, binary_from: None, json, replaying: false, paging: false }
    }

    /// Runs until the connection ends. `close_timeout` bounds waiting for the acknowledgement
    /// of scripted input and for the server's reply to our close.
    pub fn run(
        mut self,
        commands: &mut Inbox,
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
        commands: &mut Inbox,
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
            self.take_commands(out, commands, &mut closing, close_timeout, resume);
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
            Event::Message(message) if message.older && !self.paging => {
                self.paging = true;
                if let Some(start) = (Event::EarlierStart { room: message.room.clone() }).text() {
                    out.message(&start);
                }
            }
            Event::History { .. } => self.paging = false,
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
            Event::Private { from, to, outgoing, api, .. } => {
                *outgoing = !*api && resume.is_me(from) && from != to
            }
            _ => {}
        }
        let Some(line) = event.text() else { return };
        match &event {
            Event::Message(message) => {
                let kind = match resume.is_mentioned(&message.message.mentions) {
                    true => LineKind::Mention,
                    false => classify(&line),
                };
                match resume.show_ids {
                    true => out.shown(&format!("[{}:{}] {line}", message.epoch, message.message.seq), kind),
                    false => out.shown(&line, kind),
                }
            }
            _ => out.message(&line),
        }
    }

    fn take_commands(
        &mut self,
        out: &dyn Output,
        commands: &mut Inbox,
        closing: &mut Closing,
        close_timeout: Duration,
        resume: &mut Resume,
    ) {
        loop {
            let command = match commands.try_next() {
                Ok(command) => command,
                Err(TryRecvError::Empty) => return,
                // The input side is gone without saying so: finish as if told to.
                Err(TryRecvError::Disconnected) => Command::Finish { wait_for_ack: true },
            };
            if closing.close_deadline.is_some() || closing.awaiting_ack.is_some() {
                return;
            }
            let sent = match command {
                // The client's own setting: nothing is sent.
                Command::Line(line) if matches!(line.trim(), "/ids on" | "/ids off") => {
                    resume.show_ids = line.trim() == "/ids on";
                    out.status(if resume.show_ids {
                        "message ids shown: /ids off hides them"
                    } else {
                        "message ids hidden"
                    });
                    continue;
                }
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
                Command::Finish { wait_for_ack: false } | Command::Interrupt => {
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
