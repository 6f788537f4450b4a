//! Graceful shutdown of the real binary: SIGTERM tells every chat member once that the server
//! is going away, closes every client with 1001 and exits 0.

mod common;

use std::io::Write;

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;

#[test]
fn sigterm_closes_every_client_with_1001_and_exits_zero() {
    let mut server = TestServer::start(&[]);
    let mut clients: Vec<Client> = (0..5).map(|i| server.chat_client(&format!("u{i}"))).collect();
    clients.push(server.connect("/echo"));
    let mut half_open = server.tcp();
    half_open.write_all(b"GET / HTTP/1.1\r\n").unwrap();

    for ws in clients.iter_mut().take(5) {
        recv_until(ws, |t| t == "*** u4 joined lobby");
    }
    server.signal("TERM");
    for (i, ws) in clients.iter_mut().enumerate() {
        if i < 5 {
            // One notice, then the close: no "u0 left lobby" for each of the others.
            assert_eq!(recv_text(ws), "*** the server is shutting down; goodbye");
        }
        assert_eq!(expect_close(ws), (CloseCode::Away, "server shutting down".to_string()));
        let _ = ws.flush(); // sends our close reply
    }
    expect_eof(&mut half_open);
    let status = server.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    server.wait_for_log("shutting down");
    let log = server.log();
    assert!(log.iter().all(|line| !line.contains('\x1b')), "no colour codes in a redirected log: {log:?}");
}

#[test]
fn shutdown_is_bounded_even_if_a_client_never_answers() {
    let mut server = TestServer::start(&["--shutdown-timeout", "300ms"]);
    let _mute = raw_handshake(&server, "/");
    server.signal("INT");
    let status = server.wait_exit();
    assert!(status.success(), "exit status {status:?}");
}
