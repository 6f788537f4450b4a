//! `--metrics ADDR` against the real binary: the scrape endpoint's HTTP behaviour, and counts
//! that move with what clients do (refusals by reason, rate limits, slow readers, messages and
//! deliveries). The exposition's format is checked by a real OpenMetrics parser in
//! `scripts/interop.py`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use tungstenite::Message;

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
