//! permessage-deflate (RFC 7692) conformance, through raw TCP sockets: the handshake's offers and
//! answers, compressed and plain messages both ways, fragmented compressed messages, the
//! protocol errors (RSV1 where it may not be: 1002), an inflate bomb (1009, with the server's
//! memory bounded), and in the chat, one process and a cluster, a broadcast compressed for the
//! members that negotiated the extension and plain for the others.
//!
//! The client's side is written here with flate2 directly (not the server's codec), so the two
//! sides are independent: compressed with zlib's own sync flush, inflated with the window the
//! server agreed to.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use common::opcode::*;
use common::{both_modes, read_frame_with, read_http_head, Chat, TestServer};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use wschat::wire::{client_frame, UpgradeRequest};

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;

/// What the server answers a plain `permessage-deflate` offer.
const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A line long enough to be compressed (over the default `--deflate-min-size` of 128 bytes).
fn long_line(tag: &str) -> String {
    format!("{tag}: ") + &"the same words, compressed once for every member of the room. ".repeat(5)
}

/// `payload` compressed as one message: raw DEFLATE, sync flush, the `00 00 ff ff` tail off.
fn compress(payload: &[u8]) -> Vec<u8> {
    let mut deflate = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    deflate.compress_vec(payload, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "the sync flush ends with the empty block");
    out.truncate(out.len() - 4);
    out
}

/// A compressed message inflated with at most `window_bits` of window (a stream that needs
/// more fails: this is how a client holds the server to `server_max_window_bits`).
fn inflate(compressed: &[u8], window_bits: u8) -> Vec<u8> {
    let mut inflater = Decompress::new_with_window_bits(false, window_bits);
    let input = [compressed, &[0, 0, 0xff, 0xff]].concat();
    // A little output at a time: zlib then checks every distance against the window it keeps,
    // not against the whole output (which it would let a reference reach into).
    let (mut out, mut chunk) = (Vec::new(), [0u8; 64]);
    while (inflater.total_in() as usize) < input.len() || inflater.total_out() as usize > out.len() {
        let (rest, before) = (&input[inflater.total_in() as usize..], inflater.total_out());
        inflater
            .decompress(rest, &mut chunk, FlushDecompress::Sync)
            .expect("valid DEFLATE within the window");
        out.extend_from_slice(&chunk[..(inflater.total_out() - before) as usize]);
    }
    out
}

/// A message as a client receives it.
#[derive(Debug, PartialEq, Eq)]
struct Message {
    opcode: u8,
    /// RSV1 was set on its (first) frame.
    compressed: bool,
    /// Its payload, inflated if it was compressed.
    payload: Vec<u8>,
}

/// A raw client on `/echo` or the chat, its frames under the test's control.
struct Peer {
    stream: TcpStream,
    /// The server's `Sec-WebSocket-Extensions` answer, if any.
    answer: Option<String>,
    /// The window the client accepted for the server's messages.
    window_bits: u8,
}

impl Peer {
    fn open(server: &TestServer, path: &str, offer: Option<&str>) -> Self {
        let mut stream = server.tcp();
        let host = server.addr.to_string();
        let mut request = UpgradeRequest::new(&host, path);
        if let Some(offer) = offer {
            request = request.header("Sec-WebSocket-Extensions", offer);
        }
        stream.write_all(&request.to_bytes()).unwrap();
        let head = read_http_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let answer = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions").then(|| value.trim().to_string())
        });
        let window_bits = answer
            .as_deref()
            .and_then(|a| a.split(';').find_map(|p| p.trim().strip_prefix("server_max_window_bits=")))
            .map_or(15, |bits| bits.parse().unwrap());
        Self { stream, answer, window_bits }
    }

    fn send_raw(&mut self, frames: &[(u8, &[u8])]) {
        let mut bytes = Vec::new();
        for (i, (first, payload)) in frames.iter().enumerate() {
            bytes.extend(client_frame(*first, payload, Some([0x37, 0xfa, 0x21, i as u8])));
        }
        self.stream.write_all(&bytes).unwrap();
    }

    /// One compressed message, in one frame.
    fn send_compressed(&mut self, opcode: u8, payload: &[u8]) {
        self.send_raw(&[(FIN | RSV1 | opcode, &compress(payload))]);
    }

    fn next_frame(&mut self) -> (u8, Vec<u8>) {
        let stream = &mut self.stream;
        let (header, payload) =
            read_frame_with(|buf| stream.read_exact(buf)).expect("a frame within the wait");
        assert!(!header.masked, "server frames are not masked");
        (header.first_byte, payload)
    }

    /// Reads frames until one with this payload arrives.
    fn wait_for(&mut self, payload: &[u8]) {
        while self.next_frame().1 != payload {}
    }

    /// The next data message (pongs and chat notices skipped), inflated if compressed.
    fn next_message(&mut self) -> Message {
        loop {
            let (first, mut payload) = self.next_frame();
            let opcode = first & 0x0f;
            if opcode == PONG || (opcode == TEXT && payload.starts_with(b"*** ")) {
                continue;
            }
            assert_eq!(first & 0x30, 0, "RSV2 and RSV3 stay clear");
            let compressed = first & RSV1 != 0;
            assert!(first & FIN != 0, "the server does not fragment its messages");
            if compressed {
                assert!(self.answer.is_some(), "compressed frames only after negotiation");
                payload = inflate(&payload, self.window_bits);
            }
            return Message { opcode, compressed, payload };
        }
    }

    /// Expects the server to fail the connection with `code`.
    fn expect_close(&mut self, code: u16) {
        loop {
            let (first, payload) = self.next_frame();
            if first & 0x0f == CLOSE {
                assert_eq!(
                    u16::from_be_bytes([payload[0], payload[1]]),
                    code,
                    "{:?}",
                    String::from_utf8_lossy(&payload[2..])
                );
                return;
            }
        }
    }
}

fn text(payload: impl AsRef<[u8]>, compressed: bool) -> Message {
    Message { opcode: TEXT, compressed, payload: payload.as_ref().to_vec() }
}

// ----- the handshake -----

#[test]
fn offers_are_answered_without_context_takeover_or_declined() {
    let server = TestServer::start(&[]);
    let answer = |offer: Option<&str>| Peer::open(&server, "/echo", offer).answer;
    assert_eq!(answer(None), None, "no offer, no extension");
    assert_eq!(answer(Some("permessage-deflate")).as_deref(), Some(BOTH));
    // What browsers offer.
    assert_eq!(answer(Some("permessage-deflate; client_max_window_bits")).as_deref(), Some(BOTH));
    assert_eq!(
        answer(Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")).as_deref(),
        Some(BOTH)
    );
    assert_eq!(
        answer(Some("permessage-deflate; server_max_window_bits=10")).as_deref(),
        Some(&*format!("{BOTH}; server_max_window_bits=10"))
    );
    // Offers it cannot honour are declined; the first acceptable one of several is taken.
    for declined in [
        "permessage-deflate; mystery",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "x-webkit-deflate-frame",
    ] {
        assert_eq!(answer(Some(declined)), None, "{declined}");
    }
    assert_eq!(
        answer(Some("permessage-deflate; mystery, permessage-deflate; server_max_window_bits=12")).as_deref(),
        Some(&*format!("{BOTH}; server_max_window_bits=12"))
    );
}

#[test]
fn a_declined_offer_goes_on_uncompressed() {
    let server = TestServer::start(&[]);
    let mut peer = Peer::open(&server, "/echo", Some("permessage-deflate; mystery"));
    let line = long_line("plain");
    peer.send_raw(&[(FIN | TEXT, line.as_bytes())]);
    assert_eq!(peer.next_message(), text(&line, false));
    // RSV1 without the extension is a protocol error.
    peer.send_compressed(TEXT, line.as_bytes());
    peer.expect_close(1002);
}

#[test]
fn with_deflate_off_nothing_is_negotiated() {
    let server = TestServer::start(&["--deflate", "off"]);
    let mut peer = Peer::open(&server, "/echo", Some("permessage-deflate"));
    assert_eq!(peer.answer, None);
    let line = long_line("off");
    peer.send_raw(&[(FIN | TEXT, line.as_bytes())]);
    assert_eq!(peer.next_message(), text(&line, false));
}

// ----- messages -----

#[test]
fn messages_both_ways_compressed_or_not() {
    let server = TestServer::start(&[]);
    let mut peer = Peer::open(&server, "/echo", Some("permessage-deflate"));
    let line = long_line("echo");
    // Compressed in, compressed out.
    peer.send_compressed(TEXT, line.as_bytes());
    assert_eq!(peer.next_message(), text(&line, true));
    // Plain in, compressed out: the choice is the sender's, message by message.
    peer.send_raw(&[(FIN | TEXT, line.as_bytes())]);
    assert_eq!(peer.next_message(), text(&line, true));
    // Under --deflate-min-size: plain out.
    peer.send_compressed(TEXT, b"short");
    assert_eq!(peer.next_message(), text("short", false));
    // Binary, and an empty compressed message (one byte: an empty final block... or the
    // empty stored block's first byte, as zlib makes it).
    let binary: Vec<u8> = (0..2000u32).map(|i| (i % 7) as u8).collect();
    peer.send_compressed(BINARY, &binary);
    assert_eq!(peer.next_message(), Message { opcode: BINARY, compressed: true, payload: binary });
    peer.send_compressed(TEXT, b"");
    assert_eq!(peer.next_message(), text("", false));
    // RFC 7692 7.2.3.3: "Hello" in a stored block; 7.2.3.4: ended by a final block.
    peer.send_raw(&[(
        FIN | RSV1 | TEXT,
        &[0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00],
    )]);
    assert_eq!(peer.next_message(), text("Hello", false));
    peer.send_raw(&[(FIN | RSV1 | TEXT, &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00])]);
    assert_eq!(peer.next_message(), text("Hello", false));
}

#[test]
fn a_fragmented_compressed_message_with_a_ping_between_its_fragments() {
    let server = TestServer::start(&[]);
    let mut peer = Peer::open(&server, "/echo", Some("permessage-deflate"));
    let line = long_line("fragments").repeat(20);
    let compressed = compress(line.as_bytes());
    let third = compressed.len() / 3;
    peer.send_raw(&[
        (RSV1 | TEXT, &compressed[..third]),
        (CONTINUATION, &compressed[third..2 * third]),
        (FIN | PING, b"between"),
        (FIN | CONTINUATION, &compressed[2 * third..]),
    ]);
    let (first, pong) = peer.next_frame();
    assert_eq!((first, pong.as_slice()), (FIN | PONG, b"between".as_slice()), "the ping is answered at once");
    assert_eq!(peer.next_message(), text(&line, true));
    // The same, one byte per write.
    for byte in client_frame(FIN | RSV1 | TEXT, &compressed, Some([1, 2, 3, 4])) {
        peer.stream.write_all(&[byte]).unwrap();
    }
    assert_eq!(peer.next_message(), text(&line, true));
}

#[test]
fn a_client_limited_window_gets_frames_it_can_inflate() {
    let server = TestServer::start(&[]);
    // 2,000 random letters said twice: compressed with a 15-bit window, the second half is a
    // reference 2,000 bytes back, which an inflater with a smaller window refuses.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let letters: String = (0..2000)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            char::from(b'a' + ((state >> 33) % 26) as u8)
        })
        .collect();
    let far = letters.repeat(2);
    for bits in [9u8, 10, 12] {
        let offer = format!("permessage-deflate; server_max_window_bits={bits}");
        let mut peer = Peer::open(&server, "/echo", Some(&offer));
        assert_eq!(peer.window_bits, bits);
        peer.send_compressed(TEXT, far.as_bytes());
        assert_eq!(peer.next_message(), text(&far, true), "{bits} bits");
    }
    // 8 bits is more than zlib can keep to: accepted, and answered uncompressed.
    let mut peer = Peer::open(&server, "/echo", Some("permessage-deflate; server_max_window_bits=8"));
    assert_eq!(peer.window_bits, 8);
    peer.send_compressed(TEXT, far.as_bytes());
    assert_eq!(peer.next_message(), text(&far, false));
}

// ----- protocol errors and limits -----

#[test]
fn rsv1_where_it_may_not_be_is_a_protocol_error() {
    let server = TestServer::start(&[]);
    let open = || Peer::open(&server, "/echo", Some("permessage-deflate"));
    let mut peer = open();
    peer.send_raw(&[(FIN | RSV1 | PING, b"")]);
    peer.expect_close(1002);
    let mut peer = open();
    peer.send_raw(&[(RSV1 | TEXT, &compress(b"part")), (FIN | RSV1 | CONTINUATION, &[0x03, 0x00])]);
    peer.expect_close(1002);
    let mut peer = open();
    peer.send_raw(&[(RSV1 | TEXT, &compress(b"part")), (FIN | TEXT, b"another message")]);
    peer.expect_close(1002);
    // Not valid DEFLATE; and valid DEFLATE that is not UTF-8 in a text message.
    let mut peer = open();
    peer.send_raw(&[(FIN | RSV1 | TEXT, &[0xff; 12])]);
    peer.expect_close(1007);
    let mut peer = open();
    peer.send_compressed(TEXT, &[0xc3, 0x28, 0xa0, 0xa1]);
    peer.expect_close(1007);
}

/// The server's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(server: &TestServer) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn an_inflate_bomb_is_closed_with_1009_and_never_inflated_whole() {
    let server = TestServer::start(&["--max-message-size", "64KiB"]);
    // 60 KiB on the wire that would inflate to 60 MiB (or more, for the fragmented one).
    let bomb = compress(&vec![b'a'; 60 << 20]);
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let before = peak_rss_kib(&server);
    let mut peer = Peer::open(&server, "/echo", Some("permessage-deflate"));
    peer.send_raw(&[(FIN | RSV1 | TEXT, &bomb)]);
    peer.expect_close(1009);
    let mut peer = Peer::open(&server, "/echo", Some("permessage-deflate"));
    let half = bomb.len() / 2;
    peer.send_raw(&[(RSV1 | BINARY, &bomb[..half]), (FIN | CONTINUATION, &bomb[half..])]);
    peer.expect_close(1009);
    let grown = peak_rss_kib(&server).saturating_sub(before);
    assert!(grown < 8 << 10, "the server's peak memory grew by {grown} KiB for a 60 MiB bomb");
    // Compressed bytes past the limit are refused before they are inflated.
    let mut peer = Peer::open(&server, "/echo", Some("permessage-deflate"));
    let noise: Vec<u8> =
        (0..80_000u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8).collect();
    let _ = peer.stream.write_all(&client_frame(FIN | RSV1 | BINARY, &compress(&noise), Some([9, 9, 9, 9])));
    peer.expect_close(1009);
    // And the server goes on for everyone else.
    let mut other = Peer::open(&server, "/echo", Some("permessage-deflate"));
    other.send_compressed(TEXT, long_line("after").as_bytes());
    assert_eq!(other.next_message(), text(long_line("after"), true));
    let _ = peer.stream.read(&mut [0u8; 1]).map_err(|e| assert_ne!(e.kind(), ErrorKind::WouldBlock));
}

// ----- in the chat -----

both_modes!(a_broadcast_is_compressed_for_those_that_negotiated_it);
/// Ana (compressing) and Ben (not) on different processes in a cluster: Ana's long line
/// reaches Ben plain and Ana compressed, Ben's reaches both likewise; a late joiner that
/// compresses gets the history replayed compressed.
fn a_broadcast_is_compressed_for_those_that_negotiated_it(chat: &Chat) {
    let mut ana =
        Peer::open(chat.process(0), "/?nick=ana", Some("permessage-deflate; client_max_window_bits"));
    assert_eq!(ana.answer.as_deref(), Some(BOTH));
    // Ana is in the room (in a cluster, her process has subscribed to it) before Ben comes,
    // and Ben's join reaches her: from here on both hear the room.
    ana.wait_for(b"*** ana joined lobby");
    let mut ben = Peer::open(chat.process(1 % chat.processes().len()), "/?nick=ben", None);
    assert_eq!(ben.answer, None);
    ana.wait_for(b"*** ben joined lobby");
    let from_ana = long_line("from ana");
    ana.send_compressed(TEXT, from_ana.as_bytes());
    assert_eq!(ana.next_message(), text(format!("ana: {from_ana}"), true));
    assert_eq!(ben.next_message(), text(format!("ana: {from_ana}"), false));
    let from_ben = long_line("from ben");
    ben.send_raw(&[(FIN | TEXT, from_ben.as_bytes())]);
    assert_eq!(ben.next_message(), text(format!("ben: {from_ben}"), false));
    assert_eq!(ana.next_message(), text(format!("ben: {from_ben}"), true));
    // History, replayed compressed to a client that negotiated it.
    let mut cam = Peer::open(chat.process(0), "/?nick=cam", Some("permessage-deflate"));
    assert_eq!(cam.next_message(), text(format!("ana: {from_ana}"), true));
    assert_eq!(cam.next_message(), text(format!("ben: {from_ben}"), true));
}
