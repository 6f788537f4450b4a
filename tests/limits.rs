//! Limits over real sockets: slow readers are cut off with memory bounded, half-open handshakes
//! and silent clients time out, the connection cap answers 503, accept errors are survived,
//! and a thousand clients all receive a broadcast.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

/// Connects a chat client, retrying (within the deadline) while the server still answers 503.
fn connect_when_room(server: &TestServer, nick: &str) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        match tungstenite::client(server.url(&format!("/?nick={nick}")), server.tcp()) {
            Ok((mut ws, _)) => {
                recv_until(&mut ws, |t| t.starts_with("*** welcome"));
                return ws;
            }
            Err(e) => assert!(Instant::now() < deadline, "never got a slot: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn slow_reader_is_cut_off_while_others_keep_receiving_and_memory_stays_bounded() {
    const SIZE: usize = 16 * 1024;
    const COUNT: usize = 3000; // 48 MiB through the room
    const WINDOW: usize = 4;
    let server = TestServer::start(&[
        "--max-message-size",
        "16KiB",
        "--max-outbound",
        "1MiB",
        "--close-timeout",
        "60s",
    ]);
    let mut slow = server.chat_client("slow");
    let mut sender = server.chat_client("sender");
    let mut watcher = server.chat_client("watcher");
    recv_until(&mut sender, |t| t == "*** watcher joined lobby");
    recv_until(&mut watcher, |t| t == "*** watcher joined lobby");
    let baseline_kib = server.rss_kib();

    let watched = Arc::new(AtomicUsize::new(0));
    let progress = watched.clone();
    let watcher_thread = std::thread::spawn(move || {
        for n in 0..COUNT {
            let text = recv_until(&mut watcher, |t| !t.starts_with("*** "));
            assert!(text.starts_with(&format!("sender: {n:05} ")), "watcher got message {n} in order");
            progress.store(n + 1, Ordering::Release);
        }
    });
    let filler = "x".repeat(SIZE - 16);
    for n in 0..COUNT {
        // Stay at most WINDOW messages ahead of both healthy readers.
        if n >= WINDOW {
            let text = recv_until(&mut sender, |t| !t.starts_with("*** "));
            assert!(text.starts_with(&format!("sender: {:05} ", n - WINDOW)));
            let deadline = Instant::now() + WAIT;
            while watched.load(Ordering::Acquire) + WINDOW < n {
                assert!(Instant::now() < deadline, "watcher stalled at {}", watched.load(Ordering::Acquire));
                std::thread::yield_now();
            }
        }
        sender.send(Message::text(format!("{n:05} {filler}"))).unwrap();
    }
    watcher_thread.join().expect("watcher received every message in order");

    let growth_kib = server.peak_rss_kib().saturating_sub(baseline_kib);
    assert!(growth_kib < 24 * 1024, "server memory grew by {growth_kib} KiB for a 48 MiB flood");
    server.wait_for_log("slow");

    // The slow reader gets what was already on its way, then a policy close.
    let mut received = 0;
    let close = loop {
        match slow.read().expect("slow reader's stream ends with a close frame") {
            Message::Text(t) if !t.starts_with("*** ") => received += 1,
            Message::Close(frame) => break frame.expect("close code"),
            _ => {}
        }
    };
    assert_eq!(close.code, CloseCode::Policy, "{close:?}");
    assert!(received < COUNT, "it was cut off, not served everything ({received})");
}

#[test]
fn half_open_and_dribbling_handshakes_are_dropped() {
    let server = TestServer::start(&["--handshake-timeout", "300ms"]);
    let mut silent = server.tcp();
    silent.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut dribbler = server.tcp();
    let dribble = std::thread::spawn(move || {
        // One byte every 50ms would take 10s to finish this head; the deadline is absolute.
        for byte in
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n".repeat(3).bytes()
        {
            if dribbler.write_all(&[byte]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    expect_eof(&mut silent);
    assert!(dribble.join().unwrap(), "the dribbler was disconnected before its head was complete");
    server.wait_for_log("handshake not completed");
    // Nobody else was affected.
    let mut fine = server.chat_client("fine");
    send(&mut fine, "ok");
    assert_eq!(recv_until(&mut fine, |t| !t.starts_with("*** ")), "fine: ok");
}

#[test]
fn idle_clients_are_pinged_and_kept_if_they_answer() {
    let server = TestServer::start(&["--idle-timeout", "600ms"]);
    let mut ws = server.chat_client("awake");
    let mut pings = 0;
    while pings < 3 {
        // tungstenite answers each ping with a pong on the next read.
        if let Message::Ping(payload) = ws.read().expect("connection stays open") {
            assert_eq!(&payload[..], b"wschat");
            pings += 1;
        }
    }
    send(&mut ws, "still here");
    assert_eq!(recv_until(&mut ws, |t| !t.starts_with("*** ")), "awake: still here");
}

#[test]
fn idle_clients_that_never_answer_are_closed_with_1001() {
    let server = TestServer::start(&["--idle-timeout", "400ms", "--close-timeout", "300ms"]);
    let mut mute = raw_handshake(&server, "/echo");
    let ping = read_frame(&mut mute);
    assert_eq!(ping.opcode(), 9, "first a ping");
    assert_eq!(read_close_code(&mut mute), 1001);
    expect_eof(&mut mute);
}

#[test]
fn past_max_connections_new_clients_get_503_and_existing_ones_are_untouched() {
    let server = TestServer::start(&["--max-connections", "3"]);
    let mut clients: Vec<Client> = ["a", "b", "c"].iter().map(|n| server.chat_client(n)).collect();
    let refused = http_exchange(&server, &upgrade_request(&server, "/"));
    assert!(refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{refused}");
    assert!(refused.contains("Retry-After: 5\r\n"));
    send(&mut clients[0], "we are fine");
    for ws in clients.iter_mut() {
        assert_eq!(recv_until(ws, |t| !t.starts_with("*** ")), "a: we are fine");
    }
    // A slot frees up when someone leaves.
    let mut leaving = clients.pop().unwrap();
    leaving.close(None).unwrap();
    while leaving.read().is_ok() {} // until the server has completed the close
    let _ = connect_when_room(&server, "d");
}

#[test]
fn a_thousand_clients_all_receive_one_broadcast() {
    const N: usize = 1000;
    let server = TestServer::start(&[]);
    let mut clients: Vec<Client> = (0..N).map(|i| server.connect(&format!("/?nick=c{i}"))).collect();
    send(&mut clients[N - 1], "hello, thousand");
    for (i, ws) in clients.iter_mut().enumerate() {
        let got = recv_until(ws, |t| !t.starts_with("*** "));
        assert_eq!(got, format!("c{}: hello, thousand", N - 1), "client {i}");
    }
}

#[test]
fn accept_errors_are_survived_without_a_busy_loop() {
    // Under a file limit of 24 the server runs out of descriptors after a dozen clients.
    let mut shell = Command::new("sh");
    shell.args(["-c", "ulimit -n 24 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_wschat-server")]);
    let server = TestServer::start_with(shell, &["--handshake-timeout", "60s"]);
    let hogs: Vec<TcpStream> = (0..40).map(|_| server.tcp()).collect();
    server.wait_for_log("accept failed");
    let before = server.cpu_ticks();
    std::thread::sleep(Duration::from_secs(1)); // a measurement window, not synchronisation
    let spent = server.cpu_ticks() - before;
    assert!(spent < 30, "server burned {spent} ticks in 1s while out of descriptors");
    drop(hogs);
    let mut ws = connect_when_room(&server, "back");
    send(&mut ws, "recovered");
    assert_eq!(recv_until(&mut ws, |t| !t.starts_with("*** ")), "back: recovered");
    assert_eq!(
        server.log().iter().filter(|l| l.contains("accept failed")).count(),
        1,
        "one warning per episode"
    );
}

#[test]
fn a_client_over_max_messages_per_sec_is_closed_with_1008_and_others_are_not() {
    let server = TestServer::start(&["--max-messages-per-sec", "20"]);
    let mut polite = server.chat_client("polite");
    let mut flooder = server.chat_client("flooder");
    // A burst of up to one second's worth is allowed.
    for i in 0..15 {
        flooder.write(Message::text(format!("burst {i}"))).unwrap();
    }
    flooder.flush().unwrap();
    recv_until(&mut polite, |t| t == "flooder: burst 14");
    // Far past it is not.
    for i in 0..200 {
        if flooder.write(Message::text(format!("flood {i}"))).is_err() {
            break;
        }
    }
    let _ = flooder.flush();
    let (code, reason) = expect_close(&mut flooder);
    assert_eq!(code, CloseCode::Policy);
    assert_eq!(reason, "rate limit exceeded: more than 20 messages per second");
    server.wait_for_log("--max-messages-per-sec");
    // The polite client is still served, and saw at most a second's worth of the flood.
    send(&mut polite, "still here");
    let mut flood_seen = 0;
    loop {
        let text = recv_text(&mut polite);
        flood_seen += usize::from(text.starts_with("flooder: flood"));
        if text == "polite: still here" {
            break;
        }
    }
    assert!(flood_seen <= 6, "{flood_seen} flood messages relayed");
}
