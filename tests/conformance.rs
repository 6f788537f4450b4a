//! RFC 6455 conformance, after the Autobahn|Testsuite's sections 1 to 10, through raw TCP
//! sockets with this file's own frame writer (any FIN/RSV/opcode, masked, fragmented, written
//! whole or one byte per write).
//!
//! Every case runs against `/echo`; the cases that make sense for the chat (`/`) run there too,
//! where a text message comes back as `NICK: TEXT`. Each case prints a line like Autobahn's
//! (`OK`, `NON-STRICT`, `FAILED`); the report is also written to `target/conformance.txt`, and
//! the test fails on any `FAILED`.
//!
//! The extension the server supports, permessage-deflate (RFC 7692: Autobahn's sections 12 and
//! 13), has its conformance cases in `tests/deflate.rs`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::opcode::*;
use common::*;

/// How long a case waits for any one expected frame or EOF.
const WAIT: Duration = Duration::from_secs(10);

/// A client frame, fully under the test's control.
#[derive(Clone)]
struct Frame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn new(opcode: u8, payload: impl AsRef<[u8]>) -> Self {
        Self { fin: true, rsv: 0, opcode, payload: payload.as_ref().to_vec() }
    }

    fn fragment(opcode: u8, payload: impl AsRef<[u8]>, fin: bool) -> Self {
        Self { fin, ..Self::new(opcode, payload) }
    }

    fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }

    fn close(code: u16, reason: &[u8]) -> Self {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        Self::new(CLOSE, payload)
    }

    fn encode(&self) -> Vec<u8> {
        let first = (u8::from(self.fin) << 7) | (self.rsv << 4) | self.opcode;
        // A key that varies with the length, so masking is really undone per frame.
        let key = [0x12, 0x9a, (self.payload.len() % 251) as u8, 0x5e];
        wschat::wire::client_frame(first, &self.payload, Some(key))
    }
}

/// What a passing case concluded; a failing case returns `Err` with the reason.
enum Verdict {
    Ok,
    /// Allowed by the RFC but not the strictest behaviour (Autobahn's NON-STRICT).
    NonStrict(String),
}

type Outcome = Result<Verdict, String>;

/// A raw connection to an endpoint.
struct Conn {
    stream: TcpStream,
    chat_nick: Option<String>,
}

#[derive(Debug)]
struct Received {
    opcode: u8,
    fin: bool,
    payload: Vec<u8>,
}

impl Conn {
    fn open(server: &TestServer, endpoint: Endpoint) -> Self {
        let stream = raw_handshake(server, endpoint.path());
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut conn = Self { stream, chat_nick: None };
        if endpoint == Endpoint::Chat {
            // The welcome names our nick; chat text comes back prefixed with it.
            match conn.next() {
                Ok(frame) => {
                    let text = String::from_utf8_lossy(&frame.payload).into_owned();
                    let nick = text.strip_prefix("*** welcome, you are ").and_then(|r| r.split(' ').next());
                    conn.chat_nick = nick.map(str::to_string);
                }
                Err(e) => panic!("no welcome: {e}"),
            }
        }
        conn
    }

    fn send(&mut self, frames: &[Frame]) -> Result<(), String> {
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        self.stream.write_all(&bytes).map_err(|e| format!("write failed: {e}"))
    }

    /// Sends one TCP write per byte (Autobahn's "chopped" variants).
    fn send_chopped(&mut self, frames: &[Frame]) -> Result<(), String> {
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        for byte in bytes {
            self.stream.write_all(&[byte]).map_err(|e| format!("write failed: {e}"))?;
        }
        Ok(())
    }

    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), String> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.stream.read(&mut buf[filled..]) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => filled += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if Instant::now() >= deadline {
                        return Err("timed out".into());
                    }
                }
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
        Ok(())
    }

    /// The next frame from the server (chat notices skipped), within [`WAIT`].
    fn next(&mut self) -> Result<Received, String> {
        loop {
            let frame = self.next_raw()?;
            let notice =
                self.chat_nick.is_some() && frame.opcode == TEXT && frame.payload.starts_with(b"*** ");
            if !notice {
                return Ok(frame);
            }
        }
    }

    fn next_raw(&mut self) -> Result<Received, String> {
        let deadline = Instant::now() + WAIT;
        let (header, payload) = read_frame_with(|buf| self.read_exact_by(buf, deadline))?;
        if header.masked {
            return Err("server frame is masked".into());
        }
        if header.first_byte & 0x70 != 0 {
            return Err("server frame has reserved bits set".into());
        }
        Ok(Received { opcode: header.opcode(), fin: header.fin(), payload })
    }

    /// Expects one whole message equal to what was sent (as the chat relays it, on `/`).
    fn expect_echo(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        if self.chat_nick.is_some() && opcode == TEXT && payload.iter().all(u8::is_ascii_whitespace) {
            // The chat relays no blank lines: the message must be accepted and produce
            // nothing, which a marker sent after it shows.
            self.send(&[Frame::new(TEXT, "after a blank line")])?;
            return self.expect_echo(TEXT, b"after a blank line");
        }
        let mut message = self.next()?;
        while !message.fin {
            let more = self.next()?;
            if more.opcode != CONTINUATION {
                return Err(format!("opcode {} inside a fragmented message", more.opcode));
            }
            message.payload.extend_from_slice(&more.payload);
            message.fin = more.fin;
        }
        let expected = match (&self.chat_nick, opcode) {
            (Some(nick), TEXT) => [format!("{nick}: ").as_bytes(), payload].concat(),
            _ => payload.to_vec(),
        };
        if message.opcode != opcode || message.payload != expected {
            return Err(format!(
                "expected opcode {opcode} with {} bytes, got opcode {} with {} bytes",
                expected.len(),
                message.opcode,
                message.payload.len()
            ));
        }
        Ok(())
    }

    fn expect_pong(&mut self, payload: &[u8]) -> Result<(), String> {
        let frame = self.next()?;
        if frame.opcode != PONG || frame.payload != payload {
            return Err(format!("expected a pong of {} bytes, got opcode {}", payload.len(), frame.opcode));
        }
        Ok(())
    }

    /// Expects a close frame with `code` (no code at all if `None`), then the server closing TCP.
    fn expect_close(&mut self, code: Option<u16>) -> Result<(), String> {
        let got = self.close_code()?;
        if got != code {
            return Err(format!("expected close code {code:?}, got {got:?}"));
        }
        Ok(())
    }

    /// Expects a close frame and then the server closing TCP; returns the frame's code.
    fn close_code(&mut self) -> Result<Option<u16>, String> {
        let frame = self.next()?;
        if frame.opcode != CLOSE {
            return Err(format!("expected a close frame, got opcode {}", frame.opcode));
        }
        let code =
            (frame.payload.len() >= 2).then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
        if frame.payload.len() > 2 && std::str::from_utf8(&frame.payload[2..]).is_err() {
            return Err("close reason is not UTF-8".into());
        }
        if code != Some(1000) && code.is_some() {
            // We failed the connection: answer the close as a client would, as Autobahn does.
            let _ = self.send(&[Frame::close(1000, b"")]);
        }
        self.expect_tcp_close()?;
        Ok(code)
    }

    fn expect_tcp_close(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 256];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err("data after the close frame".into()),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if Instant::now() >= deadline {
                        return Err("server did not close the TCP connection".into());
                    }
                }
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }

    /// Nothing arrives for a short while (used after frames that must be ignored).
    fn expect_silence(&mut self) -> Result<(), String> {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(()),
            Ok(0) => Err("connection closed".into()),
            Ok(_) => Err("unexpected data".into()),
            Err(e) => Err(format!("read failed: {e}")),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    Echo,
    Chat,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Echo => "/echo",
            Endpoint::Chat => "/",
        }
    }
}

type CaseFn = Box<dyn Fn(&mut Conn) -> Outcome>;

struct Case {
    id: String,
    description: String,
    run: CaseFn,
    /// Also meaningful on the chat endpoint.
    chat_too: bool,
}

fn case(
    id: &str,
    description: impl Into<String>,
    chat_too: bool,
    run: impl Fn(&mut Conn) -> Outcome + 'static,
) -> Case {
    Case { id: id.to_string(), description: description.into(), run: Box::new(run), chat_too }
}

/// Sends `frames` and expects the connection failed with `code`.
fn fails_with(frames: Vec<Frame>, code: u16) -> impl Fn(&mut Conn) -> Outcome {
    move |c| {
        c.send(&frames)?;
        c.expect_close(Some(code))?;
        Ok(Verdict::Ok)
    }
}

/// Sends a valid text message then `frames`; the message must be echoed before the failure.
fn echoed_then_fails(frames: Vec<Frame>, code: u16) -> impl Fn(&mut Conn) -> Outcome {
    move |c| {
        let mut all = vec![Frame::new(TEXT, "valid first")];
        all.extend(frames.iter().cloned());
        c.send(&all)?;
        c.expect_echo(TEXT, b"valid first")?;
        c.expect_close(Some(code))?;
        Ok(Verdict::Ok)
    }
}

fn payload_of(len: usize, opcode: u8) -> Vec<u8> {
    if opcode == TEXT {
        (0..len).map(|i| b'a' + (i % 26) as u8).collect()
    } else {
        (0..len).map(|i| (i * 31 % 256) as u8).collect()
    }
}

/// `payload` as one message of `opcode` in fragments of `size` bytes (the last may be shorter).
fn fragmented(opcode: u8, payload: &[u8], size: usize) -> Vec<Frame> {
    let chunks: Vec<&[u8]> = payload.chunks(size).collect();
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| Frame::fragment(if i == 0 { opcode } else { CONTINUATION }, chunk, i == last))
        .collect()
}

fn size_name(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// A text message begun and followed by `count` empty continuation frames, never finished:
/// each fragment costs at least 64 bytes of the message limit, so the server closes with 1009
/// (it may do so before everything is written).
fn continuation_flood(count: usize) -> impl Fn(&mut Conn) -> Outcome {
    move |c| {
        let mut frames = vec![Frame::fragment(TEXT, b"start".as_slice(), false)];
        frames.extend((0..count).map(|_| Frame::fragment(CONTINUATION, b"".as_slice(), false)));
        let _ = c.send(&frames);
        c.expect_close(Some(1009))?;
        Ok(Verdict::Ok)
    }
}

fn section_1() -> Vec<Case> {
    let mut cases = Vec::new();
    for (group, opcode, kind) in [(1, TEXT, "text"), (2, BINARY, "binary")] {
        for (n, len) in [0usize, 125, 126, 127, 128, 65535, 65536].into_iter().enumerate() {
            for (chopped, how) in [(false, "whole"), (true, "one byte per write")] {
                let id = format!("1.{group}.{}{}", n + 1, if chopped { "c" } else { "" });
                // The chat's 64 KiB default limit applies there; 65536 is only for /echo.
                let chat_too = len < 65536 - 64;
                cases.push(case(&id, format!("{kind} message of {len} bytes, {how}"), chat_too, move |c| {
                    let payload = payload_of(len, opcode);
                    let frame = [Frame::new(opcode, &payload)];
                    if chopped {
                        c.send_chopped(&frame)?;
                    } else {
                        c.send(&frame)?;
                    }
                    c.expect_echo(opcode, &payload)?;
                    Ok(Verdict::Ok)
                }));
            }
        }
    }
    cases
}

fn section_2() -> Vec<Case> {
    vec![
        case("2.1", "ping without payload", true, |c| {
            c.send(&[Frame::new(PING, b"")])?;
            c.expect_pong(b"")?;
            Ok(Verdict::Ok)
        }),
        case("2.2", "ping with a small text payload", true, |c| {
            c.send(&[Frame::new(PING, b"Hello, world!")])?;
            c.expect_pong(b"Hello, world!")?;
            Ok(Verdict::Ok)
        }),
        case("2.3", "ping with a small binary payload", true, |c| {
            c.send(&[Frame::new(PING, [0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff])])?;
            c.expect_pong(&[0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff])?;
            Ok(Verdict::Ok)
        }),
        case("2.4", "ping with a 125-byte payload", true, |c| {
            c.send(&[Frame::new(PING, [0xfe; 125])])?;
            c.expect_pong(&[0xfe; 125])?;
            Ok(Verdict::Ok)
        }),
        case(
            "2.5",
            "ping with a 126-byte payload is a protocol error",
            true,
            fails_with(vec![Frame::new(PING, [0xfe; 126])], 1002),
        ),
        case("2.6", "125-byte ping sent one byte per write", true, |c| {
            c.send_chopped(&[Frame::new(PING, [0x21; 125])])?;
            c.expect_pong(&[0x21; 125])?;
            Ok(Verdict::Ok)
        }),
        case("2.7", "unsolicited pong without payload is ignored", true, |c| {
            c.send(&[Frame::new(PONG, b""), Frame::new(TEXT, b"after pong")])?;
            c.expect_echo(TEXT, b"after pong")?;
            Ok(Verdict::Ok)
        }),
        case("2.8", "unsolicited pong with payload is ignored", true, |c| {
            c.send(&[Frame::new(PONG, b"unsolicited"), Frame::new(TEXT, b"after pong")])?;
            c.expect_echo(TEXT, b"after pong")?;
            Ok(Verdict::Ok)
        }),
        case("2.9", "unsolicited pong, then ping: only the ping is answered", true, |c| {
            c.send(&[Frame::new(PONG, b"unsolicited"), Frame::new(PING, b"ping")])?;
            c.expect_pong(b"ping")?;
            Ok(Verdict::Ok)
        }),
        case("2.10", "10 pings in a row, all answered in order", true, |c| {
            let pings: Vec<Frame> = (0..10).map(|i| Frame::new(PING, format!("ping {i}"))).collect();
            c.send(&pings)?;
            for i in 0..10 {
                c.expect_pong(format!("ping {i}").as_bytes())?;
            }
            Ok(Verdict::Ok)
        }),
        case("2.11", "10 pings, one byte per write, all answered", true, |c| {
            let pings: Vec<Frame> = (0..10).map(|i| Frame::new(PING, format!("ping {i}"))).collect();
            c.send_chopped(&pings)?;
            for i in 0..10 {
                c.expect_pong(format!("ping {i}").as_bytes())?;
            }
            Ok(Verdict::Ok)
        }),
    ]
}

fn section_3_and_4() -> Vec<Case> {
    let mut cases = Vec::new();
    for rsv in 1..=7u8 {
        cases.push(case(
            &format!("3.{rsv}"),
            format!("text frame with RSV bits {rsv:03b}"),
            true,
            fails_with(vec![Frame::new(TEXT, b"reserved").rsv(rsv)], 1002),
        ));
        cases.push(case(
            &format!("3.{rsv}b"),
            format!("valid message, then a frame with RSV bits {rsv:03b}"),
            true,
            echoed_then_fails(
                vec![Frame::new(if rsv % 2 == 0 { PING } else { BINARY }, b"x").rsv(rsv)],
                1002,
            ),
        ));
    }
    for (n, opcode) in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15].into_iter().enumerate() {
        let group = if opcode < 8 { 1 } else { 2 };
        cases.push(case(
            &format!("4.{group}.{}", n % 5 + 1),
            format!("reserved opcode {opcode}"),
            true,
            fails_with(vec![Frame::new(opcode, b"")], 1002),
        ));
        cases.push(case(
            &format!("4.{group}.{}b", n % 5 + 1),
            format!("valid message, then reserved opcode {opcode} with payload, then a ping"),
            true,
            echoed_then_fails(vec![Frame::new(opcode, b"reserved"), Frame::new(PING, b"")], 1002),
        ));
    }
    cases
}

/// `text` as a fragmented text message of `parts` frames.
fn fragments(text: &str, parts: usize) -> Vec<Frame> {
    let bytes = text.as_bytes();
    fragmented(TEXT, bytes, bytes.len().div_ceil(parts).max(1))
}

/// "fragment" in two fragments with a `control` frame ("between") sent between them.
fn around_control(control: u8) -> [Frame; 3] {
    [
        Frame::fragment(TEXT, b"frag", false),
        Frame::new(control, b"between"),
        Frame::fragment(CONTINUATION, b"ment", true),
    ]
}

fn section_5() -> Vec<Case> {
    vec![
        case(
            "5.1",
            "fragmented ping is a protocol error",
            true,
            fails_with(
                vec![Frame::fragment(PING, b"frag", false), Frame::fragment(CONTINUATION, b"ment", true)],
                1002,
            ),
        ),
        case(
            "5.2",
            "fragmented pong is a protocol error",
            true,
            fails_with(
                vec![Frame::fragment(PONG, b"frag", false), Frame::fragment(CONTINUATION, b"ment", true)],
                1002,
            ),
        ),
        case("5.3", "text message in 2 fragments", true, |c| {
            c.send(&fragments("fragment1fragment2", 2))?;
            c.expect_echo(TEXT, b"fragment1fragment2")?;
            Ok(Verdict::Ok)
        }),
        case("5.4", "text message in 2 fragments, one byte per write", true, |c| {
            c.send_chopped(&fragments("fragment1fragment2", 2))?;
            c.expect_echo(TEXT, b"fragment1fragment2")?;
            Ok(Verdict::Ok)
        }),
        case("5.5", "ping between two fragments is answered, the message echoed after", true, |c| {
            c.send(&around_control(PING))?;
            c.expect_pong(b"between")?;
            c.expect_echo(TEXT, b"fragment")?;
            Ok(Verdict::Ok)
        }),
        case("5.6", "pong between two fragments is ignored", true, |c| {
            c.send(&around_control(PONG))?;
            c.expect_echo(TEXT, b"fragment")?;
            Ok(Verdict::Ok)
        }),
        case("5.7", "ping between fragments, one byte per write", true, |c| {
            c.send_chopped(&around_control(PING))?;
            c.expect_pong(b"between")?;
            c.expect_echo(TEXT, b"fragment")?;
            Ok(Verdict::Ok)
        }),
        case(
            "5.8",
            "continuation without a start is a protocol error",
            true,
            fails_with(vec![Frame::fragment(CONTINUATION, b"orphan", true)], 1002),
        ),
        case(
            "5.9",
            "unfinished continuation without a start is a protocol error",
            true,
            fails_with(vec![Frame::fragment(CONTINUATION, b"orphan", false)], 1002),
        ),
        case(
            "5.10",
            "a new text message inside a fragmented one is a protocol error",
            true,
            fails_with(vec![Frame::fragment(TEXT, b"one", false), Frame::new(TEXT, b"two")], 1002),
        ),
        case(
            "5.11",
            "a final continuation after a whole message is a protocol error",
            true,
            echoed_then_fails(vec![Frame::fragment(CONTINUATION, b"late", true)], 1002),
        ),
        case("5.12", "binary message in 2 fragments", true, |c| {
            c.send(&[
                Frame::fragment(BINARY, [1, 2, 3], false),
                Frame::fragment(CONTINUATION, [4, 5], true),
            ])?;
            c.expect_echo(BINARY, &[1, 2, 3, 4, 5])?;
            Ok(Verdict::Ok)
        }),
        case("5.13", "text message in 1000 fragments", true, |c| {
            let text: String = (0..4000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let frames = fragments(&text, 1000);
            if frames.len() != 1000 {
                return Err(format!("built {} fragments", frames.len()));
            }
            c.send(&frames)?;
            c.expect_echo(TEXT, text.as_bytes())?;
            Ok(Verdict::Ok)
        }),
        case("5.14", "empty fragments around a text message", true, |c| {
            c.send(&[
                Frame::fragment(TEXT, b"", false),
                Frame::fragment(CONTINUATION, b"middle", false),
                Frame::fragment(CONTINUATION, b"", true),
            ])?;
            c.expect_echo(TEXT, b"middle")?;
            Ok(Verdict::Ok)
        }),
    ]
}

fn section_6() -> Vec<Case> {
    let mut cases = vec![
        case("6.1", "empty text message", true, |c| {
            c.send(&[Frame::new(TEXT, b"")])?;
            c.expect_echo(TEXT, b"")?;
            Ok(Verdict::Ok)
        }),
        case("6.2", "valid multi-byte UTF-8 (Greek, CJK, emoji, U+10FFFF)", true, |c| {
            let text = "κόσμε 世界 🎉 \u{10FFFF} \u{FEFF}";
            c.send(&[Frame::new(TEXT, text)])?;
            c.expect_echo(TEXT, text.as_bytes())?;
            Ok(Verdict::Ok)
        }),
        case("6.3", "valid UTF-8 with code points split across fragments", true, |c| {
            let text = "κόσμε🎉".as_bytes().to_vec();
            // Split inside the two-byte ό and inside the four-byte emoji.
            c.send(&[
                Frame::fragment(TEXT, &text[..3], false),
                Frame::fragment(CONTINUATION, &text[3..12], false),
                Frame::fragment(CONTINUATION, &text[12..], true),
            ])?;
            c.expect_echo(TEXT, &text)?;
            Ok(Verdict::Ok)
        }),
        case("6.4", "valid UTF-8 one byte per fragment", true, |c| {
            let text = "κόσμε".as_bytes().to_vec();
            let last = text.len() - 1;
            let frames: Vec<Frame> = text
                .iter()
                .enumerate()
                .map(|(i, b)| Frame::fragment(if i == 0 { TEXT } else { CONTINUATION }, [*b], i == last))
                .collect();
            c.send(&frames)?;
            c.expect_echo(TEXT, &text)?;
            Ok(Verdict::Ok)
        }),
    ];
    let invalid: [(&str, &[u8]); 10] = [
        ("overlong encoding of '/' (C0 AF)", b"\xc0\xaf"),
        ("overlong three-byte NUL (E0 80 80)", b"\xe0\x80\x80"),
        ("UTF-16 surrogate U+D800 (ED A0 80)", b"\xed\xa0\x80"),
        ("surrogate pair encoded as UTF-8", b"\xed\xa0\x80\xed\xb0\x80"),
        ("code point above U+10FFFF (F4 90 80 80)", b"\xf4\x90\x80\x80"),
        ("five-byte sequence", b"\xf8\x88\x80\x80\x80"),
        ("lone continuation byte", b"\x80"),
        ("invalid byte FE", b"\xfe"),
        ("truncated three-byte sequence at the end", b"ok \xe2\x82"),
        ("truncated sequence followed by ASCII", b"\xe2\x82 ok"),
    ];
    for (n, (what, bytes)) in invalid.into_iter().enumerate() {
        let message = [b"kappa ".as_slice(), bytes].concat();
        cases.push(case(
            &format!("6.5.{}", n + 1),
            format!("invalid UTF-8: {what}"),
            true,
            fails_with(vec![Frame::new(TEXT, &message)], 1007),
        ));
    }
    cases.push(case(
        "6.6.1",
        "invalid UTF-8 in the second of three fragments",
        true,
        fails_with(
            vec![
                Frame::fragment(TEXT, "κόσμε", false),
                Frame::fragment(CONTINUATION, b"\xed\xa0\x80", false),
                Frame::fragment(CONTINUATION, b"edited", true),
            ],
            1007,
        ),
    ));
    cases.push(case(
        "6.6.2",
        "a sequence split across fragments that completes invalidly",
        true,
        fails_with(
            vec![
                Frame::fragment(TEXT, b"ok \xf4", false),
                Frame::fragment(CONTINUATION, b"\x90\x80\x80", true),
            ],
            1007,
        ),
    ));
    cases.push(case("6.6.3", "invalid UTF-8 detected before the message ends (fail fast)", true, |c| {
        c.send(&[Frame::fragment(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", false)])?;
        // Autobahn: a server may close at once (strict) or only when the message is complete.
        match c.expect_close(Some(1007)) {
            Ok(()) => Ok(Verdict::Ok),
            Err(_) => {
                Ok(Verdict::NonStrict("invalid UTF-8 in an unfinished message not failed at once".into()))
            }
        }
    }));
    cases
}

fn section_7() -> Vec<Case> {
    let mut cases = vec![
        case("7.1.1", "normal close is echoed and TCP closed by the server", true, |c| {
            c.send(&[Frame::close(1000, b"bye")])?;
            c.expect_close(Some(1000))?;
            Ok(Verdict::Ok)
        }),
        case("7.1.2", "close without payload is answered", true, |c| {
            c.send(&[Frame::new(CLOSE, b"")])?;
            c.expect_close(None)?;
            Ok(Verdict::Ok)
        }),
        case("7.1.3", "a text frame after the close is not processed", true, |c| {
            c.send(&[Frame::close(1000, b""), Frame::new(TEXT, b"too late")])?;
            c.expect_close(Some(1000))?;
            Ok(Verdict::Ok)
        }),
        case("7.1.4", "a ping after the close is not answered", true, |c| {
            c.send(&[Frame::close(1000, b""), Frame::new(PING, b"too late")])?;
            c.expect_close(Some(1000))?;
            Ok(Verdict::Ok)
        }),
        case("7.1.5", "close in the middle of a fragmented message", true, |c| {
            c.send(&[Frame::fragment(TEXT, b"frag", false), Frame::close(1000, b"")])?;
            c.expect_close(Some(1000))?;
            Ok(Verdict::Ok)
        }),
        case("7.1.6", "a message, then close: the message is echoed first", true, |c| {
            c.send(&[Frame::new(TEXT, b"last words"), Frame::close(1000, b"")])?;
            c.expect_echo(TEXT, b"last words")?;
            c.expect_close(Some(1000))?;
            Ok(Verdict::Ok)
        }),
        case(
            "7.3.1",
            "close with a 1-byte payload is a protocol error",
            true,
            fails_with(vec![Frame::new(CLOSE, [0x03])], 1002),
        ),
        case("7.3.2", "close with a 125-byte payload is answered", true, |c| {
            c.send(&[Frame::close(1000, &[b'r'; 123])])?;
            c.expect_close(Some(1000))?;
            Ok(Verdict::Ok)
        }),
        case(
            "7.3.3",
            "close with a 126-byte payload is a protocol error",
            true,
            fails_with(vec![Frame::close(1000, &[b'r'; 124])], 1002),
        ),
        case("7.5.1", "close reason that is not UTF-8 fails the connection", true, |c| {
            c.send(&[Frame::close(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")])?;
            // RFC 6455 8.1: invalid UTF-8 where UTF-8 is required fails the connection; Autobahn
            // accepts 1002 or 1007. tungstenite reports it exactly like invalid UTF-8 in a text
            // message, so the server cannot tell the two apart and answers 1007.
            match c.close_code()? {
                Some(1002) => Ok(Verdict::Ok),
                Some(1007) => {
                    Ok(Verdict::NonStrict("failed with 1007 (invalid payload) rather than 1002".into()))
                }
                other => Err(format!("expected close 1002 or 1007, got {other:?}")),
            }
        }),
    ];
    // 1012 (service restart) and 1013 (try again later) were registered with IANA after RFC
    // 6455 and are accepted; 1014 (bad gateway) is not known to tungstenite and is refused.
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 3999, 4000, 4999]
    {
        cases.push(case(
            &format!("7.7.{code}"),
            format!("valid close code {code} is answered"),
            true,
            move |c| {
                c.send(&[Frame::close(code, b"")])?;
                let frame = c.next()?;
                if frame.opcode != CLOSE {
                    return Err(format!("expected a close frame, got opcode {}", frame.opcode));
                }
                let got = (frame.payload.len() >= 2)
                    .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                c.expect_tcp_close()?;
                match got {
                    Some(echoed) if echoed == code => Ok(Verdict::Ok),
                    Some(1000) => {
                        Ok(Verdict::NonStrict(format!("answered {code} with 1000 rather than echoing it")))
                    }
                    other => Err(format!("answered {code} with {other:?}")),
                }
            },
        ));
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        cases.push(case(
            &format!("7.9.{code}"),
            format!("invalid close code {code} is a protocol error"),
            true,
            fails_with(vec![Frame::close(code, b"")], 1002),
        ));
    }
    cases
}

fn section_9_and_10(big: bool) -> Vec<Case> {
    let mut cases = Vec::new();
    if big {
        for (n, len) in [1usize << 20, 4 << 20, 16 << 20].into_iter().enumerate() {
            for (opcode, kind) in [(TEXT, "text"), (BINARY, "binary")] {
                cases.push(case(
                    &format!("9.{}.{}", opcode, n + 1),
                    format!("{kind} message of {} MiB", len >> 20),
                    false,
                    move |c| {
                        let payload = payload_of(len, opcode);
                        c.send(&[Frame::new(opcode, &payload)])?;
                        c.expect_echo(opcode, &payload)?;
                        Ok(Verdict::Ok)
                    },
                ));
            }
        }
        // Autobahn 9.3 and 9.4: a 4 MiB message in fragments from 64 B to 4 MiB. RFC 6455 puts
        // no bound on the number of fragments: 65,536 of 64 B must pass under a 16 MiB limit.
        for (group, opcode, kind) in [(3, TEXT, "text"), (4, BINARY, "binary")] {
            let sizes = [64usize, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];
            for (n, fragment) in sizes.into_iter().enumerate() {
                cases.push(case(
                    &format!("9.{group}.{}", n + 1),
                    format!("a 4 MiB {kind} message in fragments of {}", size_name(fragment)),
                    false,
                    move |c| {
                        let payload = payload_of(4 << 20, opcode);
                        c.send(&fragmented(opcode, &payload, fragment))?;
                        c.expect_echo(opcode, &payload)?;
                        Ok(Verdict::Ok)
                    },
                ));
            }
        }
        cases.push(case(
            "10.1.3",
            "empty continuation frames without end are closed with 1009 under a 16 MiB limit too",
            false,
            continuation_flood(300_000),
        ));
        cases.push(case(
            "9.9.1",
            "a message over the limit is closed with 1009",
            false,
            fails_with(vec![Frame::new(BINARY, vec![0u8; (16 << 20) + 1])], 1009),
        ));
    } else {
        cases.push(case("9.8.1", "10,000 small messages sent at once, all echoed in order", true, |c| {
            let frames: Vec<Frame> = (0..10_000).map(|i| Frame::new(TEXT, format!("m{i}"))).collect();
            c.send(&frames)?;
            for i in 0..10_000 {
                c.expect_echo(TEXT, format!("m{i}").as_bytes())?;
            }
            Ok(Verdict::Ok)
        }));
        cases.push(case(
            "10.1.2",
            "empty continuation frames without end are closed with 1009",
            true,
            continuation_flood(5_000),
        ));
        cases.push(case(
            "10.1.4",
            "a message charged over the limit is refused even if its last fragment comes in the same write",
            true,
            |c| {
                // 72 KiB is 1,152 fragments' worth: the last one follows a few frames after.
                let mut frames = vec![Frame::fragment(TEXT, b"a".as_slice(), false)];
                frames.extend((0..1_160).map(|_| Frame::fragment(CONTINUATION, b"".as_slice(), false)));
                frames.push(Frame::fragment(CONTINUATION, b"b".as_slice(), true));
                let _ = c.send(&frames);
                c.expect_close(Some(1009))?;
                Ok(Verdict::Ok)
            },
        ));
        cases.push(case(
            "10.1.1",
            "a message over the limit is closed with 1009, also when fragmented",
            true,
            fails_with(
                vec![
                    Frame::fragment(TEXT, vec![b'a'; 40 << 10], false),
                    Frame::fragment(CONTINUATION, vec![b'a'; 40 << 10], true),
                ],
                1009,
            ),
        ));
    }
    cases
}

/// Runs `cases` against `endpoint` of `server`, each on a fresh connection, appending lines to
/// `report`; returns the number of failures.
fn run(server: &TestServer, endpoint: Endpoint, cases: &[Case], report: &mut Vec<String>) -> usize {
    let mut failed = 0;
    for case in cases.iter().filter(|c| endpoint == Endpoint::Echo || c.chat_too) {
        let mut conn = Conn::open(server, endpoint);
        let outcome = (case.run)(&mut conn);
        // Whatever the case did, the server must still serve others.
        let alive = {
            let mut probe = Conn::open(server, Endpoint::Echo);
            probe
                .send(&[Frame::new(TEXT, b"still there?")])
                .and_then(|()| probe.expect_echo(TEXT, b"still there?"))
        };
        let (verdict, detail) = match (outcome, alive) {
            (_, Err(e)) => ("FAILED", format!("server stopped answering others: {e}")),
            (Ok(Verdict::Ok), _) => ("OK", String::new()),
            (Ok(Verdict::NonStrict(why)), _) => ("NON-STRICT", why),
            (Err(why), _) => ("FAILED", why),
        };
        if verdict == "FAILED" {
            failed += 1;
        }
        let _ = conn.expect_silence();
        let line = format!(
            "{:<5} {:<12} {:<10} {}{}",
            endpoint.path(),
            case.id,
            verdict,
            case.description,
            if detail.is_empty() { String::new() } else { format!(": {detail}") }
        );
        eprintln!("{line}");
        report.push(line);
    }
    failed
}

#[test]
fn rfc6455_conformance() {
    let mut cases = section_1();
    cases.extend(section_2());
    cases.extend(section_3_and_4());
    cases.extend(section_5());
    cases.extend(section_6());
    cases.extend(section_7());
    cases.extend(section_9_and_10(false));
    let big_cases = section_9_and_10(true);

    // No history: every case's connection to the chat starts from a quiet room, not from a
    // replay of the cases before it.
    let server =
        TestServer::start(&["--max-message-size", "72KiB", "--max-outbound", "8MiB", "--history", "0"]);
    let big_server =
        TestServer::start(&["--max-message-size", "16MiB", "--max-outbound", "17MiB", "--history", "0"]);
    let mut report = Vec::new();
    let mut failed = run(&server, Endpoint::Echo, &cases, &mut report);
    failed += run(&big_server, Endpoint::Echo, &big_cases, &mut report);
    failed += run(&server, Endpoint::Chat, &cases, &mut report);

    let count =
        |verdict: &str| report.iter().filter(|l| l.split_whitespace().nth(2) == Some(verdict)).count();
    let summary = format!(
        "conformance: {} cases, {} OK, {} NON-STRICT, {} FAILED",
        report.len(),
        count("OK"),
        count("NON-STRICT"),
        count("FAILED")
    );
    eprintln!("{summary}");
    report.push(summary.clone());
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&target);
    let _ = std::fs::write(target.join("conformance.txt"), report.join("\n") + "\n");
    assert_eq!(failed, 0, "{summary}; see the FAILED lines above");
}
