//! Graceful shutdown of the real binary: SIGTERM closes every client with 1001 and exits 0.

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

    server.signal("TERM");
    for ws in clients.iter_mut() {
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
