//! `--metrics ADDR` against the real binary: the scrape endpoint's HTTP behaviour, its slots
//! (idle connections neither lock a scrape out nor flood the log, and running out of
//! descriptors only delays scrapes), and counts that move with what clients do (refusals by
//! reason, rate limits, slow readers, messages and deliveries). The exposition's format is
//! checked by a real OpenMetrics parser in `scripts/interop.py`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use tungstenite::Message;
use wschat::logline::WARNINGS_PER_SECOND;

use common::*;

/// A server with metrics on a port of its own; returns it and the metrics address.
fn server_with_metrics(flags: &[&str]) -> (TestServer, String) {
    let mut all = vec!["--metrics", "127.0.0.1:0"];
    all.extend_from_slice(flags);
    let server = TestServer::start(&all);
    let addr = server.metrics_addr();
    (server, addr)
}

fn http(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn the_endpoint_serves_only_metrics_and_only_on_its_own_port() {
    let (server, addr) = server_with_metrics(&[]);
    let ok = http(&addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(ok.contains("Content-Type: application/openmetrics-text"), "{ok}");
    assert!(ok.ends_with("# EOF\n"), "{ok}");
    let head = http(&addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
    assert!(http(&addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    let post = http(&addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET, HEAD"), "{post}");
    let public = http_exchange(&server, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(public.starts_with("HTTP/1.1 404"), "the chat port does not serve metrics: {public}");
}

/// A scrape that must be answered within [`WAIT`]: its response.
#[track_caller]
fn scrape_by_deadline(addr: &str) -> String {
    scrape_on(TcpStream::connect(addr).unwrap())
}

/// [`scrape_by_deadline`] on a connection already open.
#[track_caller]
fn scrape_on(mut stream: TcpStream) -> String {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n\r\n").unwrap();
    let mut response = Vec::new();
    if let Err(e) = stream.read_to_end(&mut response) {
        panic!("scrape not answered ({e}); got {:?}", String::from_utf8_lossy(&response));
    }
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response:?}");
    assert!(response.contains("wschat_connections_open") && response.ends_with("# EOF\n"), "{response}");
    response
}

/// The server's log lines about one metrics connection (its address follows "metrics: ").
fn peer_lines(server: &TestServer) -> Vec<String> {
    server.log().into_iter().filter(|line| line.contains("metrics: 127.0.0.1:")).collect()
}

#[test]
fn idle_connections_holding_every_slot_do_not_lock_a_scrape_out() {
    let (server, addr) = server_with_metrics(&[]);
    // More silent connections than there are slots, all held open by this test meanwhile.
    let idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let scraper = TcpStream::connect(&addr).unwrap();
    let scraper_addr = scraper.local_addr().unwrap();
    scrape_on(scraper);
    // The scrape got its slot by eviction, not because the idle ones had timed out meanwhile.
    server.wait_for_log(&format!("closed to make room for {scraper_addr}"));
    drop(idle);
}

#[test]
fn a_connection_without_a_whole_request_head_is_closed_within_seconds() {
    let (_server, addr) = server_with_metrics(&[]);
    let silent = TcpStream::connect(&addr).unwrap();
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: metr").unwrap();
    // The head deadline is a second; the rest is room for a loaded machine, short of the five
    // seconds such connections were held before.
    let deadline = Instant::now() + Duration::from_secs(3);
    for (what, mut stream) in [("silent", silent), ("half a head", half)] {
        stream
            .set_read_timeout(Some(
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)),
            ))
            .unwrap();
        match stream.read(&mut [0u8; 64]) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("{what}: still open 3 s after connecting: {other:?}"),
        }
    }
}

#[test]
fn a_flood_of_connections_past_the_slots_does_not_flood_the_log() {
    const FLOOD: usize = 200;
    let (server, addr) = server_with_metrics(&["--log-level", "debug"]);
    let started = Instant::now();
    // Held open: each one past the sixteen slots displaces one (or, before, was turned away).
    let flood: Vec<TcpStream> = (0..16 + FLOOD).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let deadline = Instant::now() + WAIT;
    let lines = loop {
        let lines = peer_lines(&server);
        if lines.len() >= FLOOD {
            break lines;
        }
        assert!(Instant::now() < deadline, "{} of {FLOOD} connections logged: {lines:#?}", lines.len());
        std::thread::sleep(Duration::from_millis(10));
    };
    // The limiter's seconds are not the clock's: lines logged over `elapsed` fall in at most
    // `elapsed + 2` of its one-second windows.
    let windows = started.elapsed().as_secs() as usize + 2;
    let warned = lines.iter().filter(|line| line.contains("[WARN]")).count();
    assert!(
        warned <= WARNINGS_PER_SECOND as usize * windows,
        "{warned} of {} lines at WARN within {windows} s windows: {lines:#?}",
        lines.len()
    );
    assert!(lines.iter().any(|line| line.contains("[DEBUG]")), "the excess is logged at debug");
    // ...and counted: the first such warning of a later second says how many went to debug.
    let deadline = Instant::now() + WAIT;
    let mut more = Vec::new();
    while !server.log().iter().any(|l| l.contains("more client-triggered warnings went to the debug level "))
    {
        assert!(Instant::now() < deadline, "no count of the warnings logged at debug");
        more.push(TcpStream::connect(&addr).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    scrape_by_deadline(&addr);
    drop(flood);
}

#[test]
fn a_scrape_that_came_while_out_of_descriptors_is_answered_once_there_are_some() {
    // Under a file limit of 24 the server runs out of descriptors after a dozen connections.
    let mut shell = Command::new("sh");
    shell.args(["-c", "ulimit -n 24 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_wschat-server")]);
    let server = TestServer::start_with(shell, &["--metrics", "127.0.0.1:0", "--handshake-timeout", "60s"]);
    let addr = server.metrics_addr();
    let hogs: Vec<TcpStream> = (0..40).map(|_| server.tcp()).collect();
    server.wait_for_log("] accept failed");
    let mut waiting: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for stream in &mut waiting {
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n\r\n").unwrap();
    }
    server.wait_for_log("metrics: accept failed");
    // Descriptors come back; nothing new arrives at the metrics port to wake its listener.
    drop(hogs);
    for mut stream in waiting {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut response = Vec::new();
        let read = stream.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response);
        assert!(read.is_ok() && response.starts_with("HTTP/1.1 200 OK"), "{read:?}: {response:?}");
    }
    let warnings = server.log().into_iter().filter(|l| l.contains("[WARN] metrics: accept failed")).count();
    assert_eq!(warnings, 1, "one warning per episode: {:#?}", server.log());
}

#[test]
fn counts_move_with_what_clients_do() {
    let (server, addr) =
        server_with_metrics(&["--max-messages-per-sec", "5", "--handshake-timeout", "200ms"]);
    let before = scrape_metrics(&addr);
    assert_eq!(metric(&before, "wschat_connections_open{state=\"chat\"}"), 0.0);

    let mut clients = server.chat_room(&["ann", "bob", "cy"]);
    let during = scrape_metrics(&addr);
    assert_eq!(metric(&during, "wschat_connections_open{state=\"chat\"}"), 3.0);
    assert_eq!(metric(&during, "wschat_members"), 3.0);

    send(&mut clients[0], "hello all");
    for client in clients.iter_mut() {
        recv_until(client, |t| t == "ann: hello all");
    }
    clients[1].send(Message::binary(vec![1, 2, 3])).unwrap();
    for client in clients.iter_mut() {
        loop {
            if matches!(recv(client), Message::Binary(_)) {
                break;
            }
        }
    }
    // A flooder passes the rate limit; a silent TCP client times out; a browser from
    // another site is refused.
    for _ in 0..50 {
        if clients[2].send(Message::text("spam")).is_err() {
            break;
        }
    }
    let (code, _) = expect_close(&mut clients[2]);
    assert_eq!(u16::from(code), 1008);
    let mut silent = server.tcp();
    expect_eof(&mut silent);
    let foreign =
        upgrade_request(&server, "/").replace("\r\n\r\n", "\r\nOrigin: http://evil.example\r\n\r\n");
    assert!(http_exchange(&server, &foreign).starts_with("HTTP/1.1 403"));

    let after = scrape_metrics(&addr);
    let moved = |series: &str| metric(&after, series) - metric(&before, series);
    assert!(moved("wschat_connections_accepted_total") >= 5.0);
    assert_eq!(moved("wschat_connections_rejected_total{reason=\"origin\"}"), 1.0);
    assert_eq!(moved("wschat_connections_rejected_total{reason=\"handshake_timeout\"}"), 1.0);
    assert_eq!(moved("wschat_rate_limited_total"), 1.0);
    assert_eq!(moved("wschat_messages_received_total{kind=\"binary\"}"), 1.0);
    // One binary message to three members; "hello all" to three.
    assert_eq!(moved("wschat_deliveries_total{kind=\"binary\"}"), 3.0);
    assert!(moved("wschat_deliveries_total{kind=\"text\"}") >= 3.0);
    assert!(moved("wschat_received_bytes_total") > 0.0 && moved("wschat_sent_bytes_total") > 0.0);
    assert!(metric(&after, "wschat_loop_turn_duration_seconds_count") > 0.0);
}

#[test]
fn a_reader_cut_off_for_falling_behind_is_counted() {
    let (server, addr) = server_with_metrics(&["--max-outbound", "70KiB"]);
    let mut talker = server.chat_client("talker");
    // A client that never reads: its socket fills, then its queue, and it is cut off.
    let _stalled = server.chat_client("stalled");
    recv_until(&mut talker, |t| t.contains("stalled joined"));
    let line = "x".repeat(60_000);
    for _ in 0..200 {
        send(&mut talker, &line);
        recv_until(&mut talker, |t| t.starts_with("talker: xxx"));
        if metric(&scrape_metrics(&addr), "wschat_slow_readers_cut_off_total") >= 1.0 {
            return;
        }
    }
    panic!("the stalled reader was never cut off");
}
