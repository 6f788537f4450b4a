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

#[test]
fn while_it_closes_its_clients_probes_and_newcomers_are_answered_503() {
    // Timeouts far beyond the test's own waits: a connection the server waited for would
    // show as a server that did not exit.
    let mut server = TestServer::start(&["--shutdown-timeout", "600s", "--close-timeout", "600s"]);
    // A client that never answers the close holds the shutdown open.
    let mute = raw_handshake(&server, "/");
    // Half a probe before the signal, the rest after: answered like a newcomer.
    let mut early = server.tcp();
    early.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    server.signal("TERM");
    server.wait_for_log("shutting down");
    early.write_all(b"Host: x\r\n\r\n").unwrap();
    let head = read_http_head(&mut early);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let health = http_exchange(&server, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.contains(r#"{"status":"shutting down","connections":"#), "{health}");
    let request = wschat::wire::UpgradeRequest::new("x", "/").to_bytes();
    let upgrade = http_exchange(&server, &String::from_utf8(request).unwrap());
    assert!(upgrade.starts_with("HTTP/1.1 503"), "{upgrade}");
    assert!(upgrade.trim_end().ends_with("the server is shutting down"), "{upgrade}");
    // A probe that read its answer and holds its socket open does not hold the exit either.
    let mut lingering = server.tcp();
    lingering.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(read_http_head(&mut lingering).starts_with("HTTP/1.1 503"));
    // Once the last client is gone it exits.
    drop(mute);
    let status = server.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    server.wait_for_log("all clients closed; bye");
    drop((early, lingering));
}
