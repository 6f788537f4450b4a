//! Cluster mode behaving like one process, against a real `redis-server` and two real
//! `wschat-server` processes: a client's own notices arrive, guest nicks have their short
//! shape, and a client flooding its room is slowed to what Redis carries rather than growing
//! its process or breaking the link, while a member on the other process gets every message,
//! in order.
//!
//! Skipped, and saying so, where `redis-server` is not installed; under `CI=true` a missing
//! `redis-server` fails (see `common::redis`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use common::redis::{member_server, RedisServer};
use common::{recv_text, recv_until, send, TestServer, WAIT};

#[test]
fn a_client_sees_its_own_joins_on_a_process_where_its_room_is_new() {
    let Some(redis) = RedisServer::start("a_client_sees_its_own_joins_on_a_process_where_its_room_is_new")
    else {
        return;
    };
    let (a, b) = (member_server(&redis, &[]), member_server(&redis, &[]));
    let mut ann = b.chat_client("ann");
    recv_until(&mut ann, |t| t == "*** ann joined lobby");
    send(&mut ann, "/join dev");
    recv_until(&mut ann, |t| t == "*** ann joined dev");
    // Nobody on `a` is in the lobby: bob's own join still comes back to him, then ann's line.
    let mut bob = a.chat_client("bob");
    recv_until(&mut bob, |t| t == "*** bob joined lobby");
    send(&mut bob, "/join dev");
    recv_until(&mut bob, |t| t == "*** bob joined dev");
    recv_until(&mut ann, |t| t == "*** bob joined dev");
    send(&mut ann, "hello bob");
    recv_until(&mut bob, |t| t == "ann: hello bob");
    // In JSON mode too: the page switches rooms on its own `joined`.
    let mut cat = common::json_client(&a, "?nick=cat");
    let joined = common::recv_through(&mut cat, "joined").1;
    assert_eq!((joined["nick"].as_str(), joined["room"].as_str()), (Some("cat"), Some("lobby")));
    send(&mut cat, "/join elsewhere");
    let joined = common::recv_through(&mut cat, "joined").1;
    assert_eq!((joined["nick"].as_str(), joined["room"].as_str()), (Some("cat"), Some("elsewhere")));
}

#[test]
fn guest_nicks_have_the_same_short_shape_on_every_process() {
    let Some(redis) = RedisServer::start("guest_nicks_have_the_same_short_shape_on_every_process") else {
        return;
    };
    let (a, b) = (member_server(&redis, &[]), member_server(&redis, &[]));
    let mut nicks = Vec::new();
    for server in [&a, &b, &a, &b] {
        let mut ws = server.connect("/");
        let welcome = recv_text(&mut ws);
        let nick = welcome.strip_prefix("*** welcome, you are ").and_then(|rest| rest.split(' ').next());
        let nick = nick.unwrap_or_else(|| panic!("not a welcome: {welcome}"));
        nicks.push(nick.to_string());
    }
    for nick in &nicks {
        let number = nick.strip_prefix("guest-").unwrap_or_else(|| panic!("{nick}"));
        assert!(number.len() <= 2 && number.parse::<u32>().is_ok(), "a short guest number: {nick}");
    }
    let unique: std::collections::HashSet<_> = nicks.iter().collect();
    assert_eq!(unique.len(), nicks.len(), "one guest number per guest across processes: {nicks:?}");
}

/// A raw chat connection, upgraded.
fn raw_chat(server: &TestServer, nick: &str) -> TcpStream {
    let stream = common::raw_handshake(server, &format!("/?nick={nick}"));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// Sends `count` text messages of `size` bytes (each starting with its number) as fast as the
/// socket takes them, while another thread reads (and drops) everything sent back.
fn flood(server: &TestServer, count: usize, size: usize) {
    let mut stream = raw_chat(server, "flooder");
    let mut reader = stream.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut buffer = vec![0; 1 << 16];
        while reader.read(&mut buffer).is_ok_and(|n| n > 0) {}
    });
    for i in 0..count {
        let mut text = format!("flood {i} ");
        text.extend(std::iter::repeat_n('x', size.saturating_sub(text.len())));
        stream.write_all(&common::client_frame(0x81, text.as_bytes(), true)).unwrap();
    }
    // A closing frame: the server ends the connection once everything before it is processed.
    stream.write_all(&common::client_frame(0x88, &1000u16.to_be_bytes(), true)).unwrap();
    drain.join().unwrap();
}

/// Reads until `count` flood lines have arrived on `ws`, checking they come in order.
fn receive_flood(ws: &mut common::Client, count: usize) {
    let mut next = 0;
    while next < count {
        let line = recv_text(ws);
        let Some(number) = line.strip_prefix("flooder: flood ").and_then(|rest| rest.split(' ').next())
        else {
            continue;
        };
        assert_eq!(number.parse::<usize>().unwrap(), next, "every message, in order");
        next += 1;
    }
}

/// Whether `server` is linked to Redis, by its metrics.
fn linked(server: &TestServer) -> f64 {
    common::metric(&common::scrape_metrics(&server.metrics_addr()), "wschat_cluster_linked")
}

fn flood_reaches_the_other_process_whole(test: &str, count: usize, size: usize) {
    let Some(redis) = RedisServer::start(test) else { return };
    // The watcher, a test thread, may read slower than the flood comes: it is given room, since
    // what is tested is the flooder's process and the link, not the slow-reader rule.
    let metrics = ["--metrics", "127.0.0.1:0", "--max-outbound", "64MiB"];
    let (a, b) = (member_server(&redis, &metrics), member_server(&redis, &metrics));
    let mut watcher = b.chat_client("watcher");
    recv_until(&mut watcher, |t| t == "*** watcher joined lobby");
    let before = a.rss_kib();
    let started = Instant::now();
    flood(&a, count, size);
    receive_flood(&mut watcher, count);
    let grown_mib = a.peak_rss_kib().saturating_sub(before) / 1024;
    eprintln!(
        "{count} messages of {size} bytes through Redis in {:?}; the flooder's process grew {grown_mib} MiB",
        started.elapsed()
    );
    assert!(grown_mib < 64, "the flooder's process grew {grown_mib} MiB");
    assert_eq!((linked(&a), linked(&b)), (1.0, 1.0), "the link stayed up");
    for server in [&a, &b] {
        let warnings: Vec<String> =
            server.log().into_iter().filter(|l| l.contains("on this server alone")).collect();
        assert!(warnings.is_empty(), "the link was never dropped: {warnings:?}");
    }
}

#[test]
fn a_guest_flooding_large_messages_is_slowed_to_what_redis_carries() {
    flood_reaches_the_other_process_whole(
        "a_guest_flooding_large_messages_is_slowed_to_what_redis_carries",
        1_500,
        8_000,
    );
}

#[test]
fn a_guest_flooding_small_messages_is_slowed_to_what_redis_carries() {
    flood_reaches_the_other_process_whole(
        "a_guest_flooding_small_messages_is_slowed_to_what_redis_carries",
        5_000,
        200,
    );
}
