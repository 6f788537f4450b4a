//! A connection driven entirely in memory, for fuzzing and property tests: bytes in, verdict
//! out, no sockets.
//!
//! It runs the same pieces, in the same order, as the event loop does for one connection:
//! [`http::head_progress`] on the request bytes, [`http::decide`] with the configured origin
//! policy, tungstenite's handshake over a [`HandshakeStream`], tungstenite's frame reader with
//! the server's [`WebSocketConfig`](tungstenite::protocol::WebSocketConfig), read errors mapped
//! by [`Failure::of`], and text and binary messages dispatched to a real [`Chat`]. What it
//! leaves out is only the IO: the socket, the poll loop and the timers.

use std::io::{self, Read, Write};

use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

use crate::chat::{Chat, Effect};
use crate::config::Config;
use crate::connection::{Failure, HandshakeStream};
use crate::http::{self, Decision, Endpoint, HeadProgress};

/// Input handed out as a socket would: what there is, then `WouldBlock`. What tungstenite
/// writes (pongs, close replies) is discarded.
struct Feed<'a> {
    input: &'a [u8],
}

impl Read for Feed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.input.read(buf)
    }
}

impl Write for Feed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How one connection's input was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The head is not complete yet; the server would keep reading (until its timeout).
    Incomplete,
    /// An HTTP response with this status (page, or refusal).
    Http(u16),
    /// Upgraded; then the frames were read until the input ran out or the connection ended.
    Upgraded { messages: usize, ending: Option<Failure> },
}

/// Drives one connection: `request` is everything the client sent before the server's
/// response (data after the head is refused with 400, as in the loop), `frames`
/// what it sent once upgraded. Other members are in the chat so broadcasts have an audience.
pub fn drive(config: &Config, request: &[u8], frames: &[u8]) -> Verdict {
    let origins = match config.origin_policy() {
        Ok(origins) => origins,
        Err(_) => return Verdict::Http(500),
    };
    match http::head_progress(request) {
        HeadProgress::Incomplete => return Verdict::Incomplete,
        HeadProgress::Refused(reply) => return Verdict::Http(reply.status),
        HeadProgress::Complete => {}
    }
    let endpoint = match http::decide(request, &origins) {
        Decision::Serve(reply) | Decision::Reject(reply) => return Verdict::Http(reply.status),
        Decision::Upgrade(endpoint) => endpoint,
    };
    let ws_config = config.websocket_config();
    let mut handshake = HandshakeStream { head: request, response: Vec::new() };
    if tungstenite::accept_with_config(&mut handshake, Some(ws_config)).is_err() {
        return Verdict::Http(400);
    }
    let mut chat = Chat::with_announce_limit(config.announce_limit);
    let mut effects = Vec::new();
    const CLIENT: usize = 0;
    for bystander in 1..=3 {
        chat.connect(bystander, None, &mut effects);
    }
    if let Endpoint::Chat { nick } = &endpoint {
        chat.connect(CLIENT, nick.as_deref(), &mut effects);
    }
    let mut ws = WebSocket::from_raw_socket(Feed { input: frames }, Role::Server, Some(ws_config));
    let mut messages = 0;
    let ending = loop {
        effects.clear();
        match ws.read() {
            Ok(Message::Text(text)) => {
                messages += 1;
                if endpoint != Endpoint::Echo {
                    chat.text(CLIENT, text.as_str(), &mut effects);
                }
            }
            Ok(Message::Binary(data)) => {
                messages += 1;
                if endpoint != Endpoint::Echo {
                    chat.binary(CLIENT, data, &mut effects);
                }
            }
            Ok(Message::Close(_)) => break Some(Failure::Closed),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break None,
            Err(e) => break Some(Failure::of(e)),
        }
        if effects.iter().any(|e| matches!(e, Effect::Close { .. })) {
            break Some(Failure::Closed);
        }
    };
    chat.disconnect(CLIENT, "closed", &mut effects);
    debug_assert_eq!(chat.len(), 3, "only the bystanders remain");
    Verdict::Upgraded { messages, ending }
}

/// Runs chat command lines from several clients through one [`Chat`], checking after each that
/// its invariants hold: every member has a nick, a room, and is listed in that room.
pub fn drive_chat_lines(lines: &[(usize, &str)]) -> usize {
    let mut chat = Chat::with_announce_limit(2);
    let mut effects = Vec::new();
    for client in 0..4 {
        chat.connect(client, None, &mut effects);
    }
    let mut sent = 0;
    for (client, line) in lines {
        let client = client % 4;
        if chat.nick(client).is_none() {
            chat.connect(client, Some(line), &mut effects);
        } else {
            chat.text(client, line, &mut effects);
        }
        sent += effects.len();
        effects.clear();
        chat.check_invariants();
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    fn config() -> Config {
        Config::with_addr("127.0.0.1:0".parse().unwrap())
    }

    #[test]
    fn requests_are_judged_as_the_server_judges_them() {
        assert_eq!(drive(&config(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""), Verdict::Http(200));
        assert_eq!(drive(&config(), b"GET / HTTP/1.1\r\n", b""), Verdict::Incomplete);
        assert_eq!(drive(&config(), &[b'a'; 9000], b""), Verdict::Http(431));
        assert_eq!(drive(&config(), UPGRADE, b""), Verdict::Upgraded { messages: 0, ending: None });
    }

    #[test]
    fn frames_are_read_with_the_servers_limits() {
        // A masked text frame "hi", then a frame with a reserved bit.
        let frames = [&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2][..], &[0xC1, 0x80, 0, 0, 0, 0]].concat();
        let Verdict::Upgraded { messages, ending: Some(Failure::Close(code, _)) } =
            drive(&config(), UPGRADE, &frames)
        else {
            panic!("expected a failure")
        };
        assert_eq!((messages, u16::from(code)), (1, 1002));
    }
}
