//! Protocol behaviour over raw sockets: the `/echo` endpoint, HTTP refusals, and the RFC 6455
//! close codes for bad frames, each time checking that other clients are untouched.

mod common;

use std::io::Write;

use common::*;
use tungstenite::Message;

#[test]
fn echo_returns_text_and_binary_to_the_sender_only() {
    let server = TestServer::start(&[]);
    let mut echo = server.connect("/echo");
    let mut other = server.connect("/echo");
    echo.send(Message::text("ping? pong!")).unwrap();
    assert_eq!(recv(&mut echo), Message::text("ping? pong!"));
    let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    echo.send(Message::binary(big.clone())).unwrap();
    let Message::Binary(back) = recv(&mut echo) else { panic!("expected binary") };
    assert!(back == big, "60,000-byte binary message echoed intact");
    other.send(Message::text("mine")).unwrap();
    assert_eq!(recv(&mut other), Message::text("mine"), "the other echo session saw nothing of the first");
}

#[test]
fn echo_answers_pings_with_equal_pongs() {
    let server = TestServer::start(&[]);
    let mut stream = raw_handshake(&server, "/echo");
    stream.write_all(&client_frame(0x89, b"are you there", true)).unwrap();
    let pong = read_frame(&mut stream);
    assert_eq!((pong.first_byte, pong.payload.as_slice()), (0x8A, &b"are you there"[..]));
}

#[test]
fn unknown_path_is_404_and_plain_http_is_426() {
    let server = TestServer::start(&[]);
    let not_found = http_exchange(&server, &upgrade_request(&server, "/nowhere"));
    assert!(not_found.starts_with("HTTP/1.1 404 Not Found\r\n"), "{not_found}");
    let plain = http_exchange(&server, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(plain.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{plain}");
    assert!(plain.contains("\r\nUpgrade: websocket\r\n"), "{plain}");
    assert!(plain.ends_with("connect with a WebSocket client\n"), "short body explains: {plain}");
    let garbage = http_exchange(&server, "\u{1}\u{2}\u{3} nonsense\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{garbage}");
    let huge = http_exchange(&server, &format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000)));
    assert!(huge.starts_with("HTTP/1.1 431 "), "{huge}");
    let version = http_exchange(&server, &upgrade_request(&server, "/").replace("Version: 13", "Version: 8"));
    assert!(
        version.starts_with("HTTP/1.1 426 ") && version.contains("Sec-WebSocket-Version: 13\r\n"),
        "{version}"
    );
}

/// Sends `frames` on a fresh `/echo` session and returns the close code the server answers with,
/// after checking that a bystander chat client is unaffected.
fn close_code_after(server: &TestServer, frames: &[Vec<u8>]) -> u16 {
    // A nick of its own for every call: the previous bystander may still hold its nick while
    // the server notices it is gone.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut bystander = server.chat_client(&format!("bystander{call}"));
    let mut stream = raw_handshake(server, "/echo");
    for frame in frames {
        stream.write_all(frame).unwrap();
    }
    let code = read_close_code(&mut stream);
    expect_eof(&mut stream);
    send(&mut bystander, "still here");
    recv_until(&mut bystander, |t| t.ends_with(": still here"));
    code
}

#[test]
fn oversized_message_is_closed_with_1009() {
    let server = TestServer::start(&["--max-message-size", "1KiB"]);
    assert_eq!(close_code_after(&server, &[client_frame(0x82, &[7u8; 1025], true)]), 1009);
    // The limit covers a message's fragments together.
    let first = client_frame(0x02, &[1u8; 600], true);
    let last = client_frame(0x80, &[2u8; 600], true);
    assert_eq!(close_code_after(&server, &[first, last]), 1009);
    // Exactly at the limit is fine.
    let mut ok = raw_handshake(&server, "/echo");
    ok.write_all(&client_frame(0x82, &[7u8; 1024], true)).unwrap();
    assert_eq!(read_frame(&mut ok).payload.len(), 1024);
}

#[test]
fn invalid_utf8_is_closed_with_1007() {
    let server = TestServer::start(&[]);
    assert_eq!(close_code_after(&server, &[client_frame(0x81, b"bad \xff\xfe text", true)]), 1007);
    // Split across fragments: each half alone is not the problem, the whole is.
    let first = client_frame(0x01, b"caf\xc3", true);
    let last = client_frame(0x80, b"\x28", true);
    assert_eq!(close_code_after(&server, &[first, last]), 1007);
}

#[test]
fn protocol_violations_are_closed_with_1002() {
    let server = TestServer::start(&[]);
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("unmasked client frame", vec![client_frame(0x81, b"hello", false)]),
        ("reserved bit set", vec![client_frame(0xC1, b"hello", true)]),
        ("reserved data opcode 3", vec![client_frame(0x83, b"", true)]),
        ("reserved control opcode 11", vec![client_frame(0x8B, b"", true)]),
        ("continuation without start", vec![client_frame(0x80, b"x", true)]),
        ("fragmented ping", vec![client_frame(0x09, b"x", true)]),
        ("ping payload over 125 bytes", vec![client_frame(0x89, &[0u8; 126], true)]),
        ("close with invalid code 999", vec![client_frame(0x88, &999u16.to_be_bytes(), true)]),
        ("close with 1-byte payload", vec![client_frame(0x88, &[3], true)]),
    ];
    for (name, frames) in cases {
        assert_eq!(close_code_after(&server, &frames), 1002, "{name}");
    }
}

#[test]
fn a_valid_message_before_a_bad_frame_is_still_echoed() {
    let server = TestServer::start(&[]);
    let mut stream = raw_handshake(&server, "/echo");
    let mut both = client_frame(0x81, b"first", true);
    both.extend(client_frame(0xC1, b"bad", true));
    stream.write_all(&both).unwrap();
    assert_eq!(read_frame(&mut stream).payload, b"first");
    assert_eq!(read_close_code(&mut stream), 1002);
}

#[test]
fn client_initiated_close_is_echoed_and_tcp_closed_by_the_server() {
    let server = TestServer::start(&[]);
    let mut stream = raw_handshake(&server, "/echo");
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    stream.write_all(&client_frame(0x88, &payload, true)).unwrap();
    let reply = read_frame(&mut stream);
    assert_eq!(reply.close_code(), Some(1000));
    expect_eof(&mut stream);
}

#[test]
fn frames_sent_before_the_handshake_response_are_refused_with_400() {
    let server = TestServer::start(&[]);
    let mut request = upgrade_request(&server, "/echo");
    request.push_str("\u{81}\u{0}");
    let response = http_exchange(&server, &request);
    assert!(response.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{response}");
    assert!(response.contains("before the handshake completed"), "{response}");
}
