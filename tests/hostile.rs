//! Hostile and bursty clients against the real binary (the attacks of docs/RELIABILITY.md):
//! a burst must not cut off readers that keep up, a client that does not read must not make
//! the server hold or do more, floods of frames are bounded, log lines cannot be forged, and
//! one address cannot take every slot. The same rules run in memory in `tests/simulation.rs`.
//! What is not about one process's own limits runs against one process and against two
//! processes sharing a Redis (`both_modes!`, `tests/common/chat.rs`).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Reads server frames from a blocking socket until `count` chat lines from `sender` arrived,
/// checking their order by the number each starts with; only the first bytes of each payload
/// are kept. Publishes its progress in `progress`.
fn read_lines(mut stream: TcpStream, count: usize, progress: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; 256 * 1024];
    let (mut filled, mut seen) = (0, 0);
    while seen < count {
        let n = stream.read(&mut buf[filled..]).expect("a reader that keeps up is never cut off");
        assert!(n > 0, "the server closed a reader that keeps up after {seen} messages");
        filled += n;
        let mut at = 0;
        while let Some(header) = wschat::wire::parse_header(&buf[at..filled]) {
            let (start, len) = (header.payload_start, header.payload_len as usize);
            if filled < at + start + len {
                break;
            }
            let payload = &buf[at + start..at + start + len];
            assert_ne!(header.opcode(), 8, "closed: {:?}", String::from_utf8_lossy(payload));
            if payload.starts_with(b"sender: ") {
                assert!(
                    payload.starts_with(format!("sender: {seen:05} ").as_bytes()),
                    "message {seen} out of order"
                );
                seen += 1;
                progress.store(seen, Ordering::Release);
            }
            at += start + len;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
    }
}

// One process only: it measures that process's memory and its queues under the burst.
#[test]
fn a_burst_reaches_every_reader_that_keeps_up_and_cuts_off_only_the_one_that_does_not_read() {
    const READERS: usize = 100;
    const COUNT: usize = 2000;
    const SIZE: usize = 16 * 1024;
    /// Messages written at once: 1.6 MB, more than --max-outbound (1 MiB) in every queue.
    const BURST: usize = 100;
    let server = TestServer::start(&["--max-message-size", "16KiB", "--announce-limit", "0"]);
    let _sleeper = server.chat_client("sleeper"); // never reads again
    let mut sender = raw_handshake(&server, "/?nick=sender");
    read_frame(&mut sender);
    let baseline_kib = server.rss_kib();
    let mut progress = Vec::new();
    let mut readers = Vec::new();
    for i in 0..=READERS {
        let counter = Arc::new(AtomicUsize::new(0));
        progress.push(counter.clone());
        // The sender reads its own copies like everyone else.
        let stream = if i == READERS {
            sender.try_clone().unwrap()
        } else {
            let mut stream = raw_handshake(&server, &format!("/?nick=r{i}"));
            read_frame(&mut stream);
            stream
        };
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        readers.push(std::thread::spawn(move || read_lines(stream, COUNT, counter)));
    }
    let filler = "x".repeat(SIZE - 16);
    for wave in 0..COUNT / BURST {
        let burst: Vec<u8> = (wave * BURST..(wave + 1) * BURST)
            .flat_map(|n| client_frame(0x81, format!("{n:05} {filler}").as_bytes(), true))
            .collect();
        sender.write_all(&burst).expect("the sender is never cut off");
        let deadline = Instant::now() + Duration::from_secs(60);
        while progress.iter().any(|p| p.load(Ordering::Acquire) < (wave + 1) * BURST) {
            assert!(Instant::now() < deadline, "burst {wave} never reached every reader");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    for reader in readers {
        reader.join().expect("every reader received every message in order");
    }
    let cut_off: Vec<String> = server.log().into_iter().filter(|l| l.contains("too slow")).collect();
    assert_eq!(cut_off.len(), 1, "only the member that never reads is cut off: {cut_off:#?}");
    let growth_kib = server.peak_rss_kib().saturating_sub(baseline_kib);
    assert!(growth_kib < 48 * 1024, "server memory grew by {growth_kib} KiB");
}

// One process only: it measures the memory of the process the pings are sent to.
#[test]
fn pings_from_a_client_that_never_reads_do_not_pile_up() {
    let server = TestServer::start(&["--idle-timeout", "2s", "--close-timeout", "1s"]);
    let baseline_kib = server.rss_kib();
    let mut pinger = raw_handshake(&server, "/echo");
    pinger.set_nonblocking(true).unwrap();
    let pings: Vec<u8> = (0..1000).flat_map(|_| client_frame(0x89, &[b'p'; 125], true)).collect();
    let (mut sent, mut at) = (0usize, 0usize);
    let mut blocked_since: Option<Instant> = None;
    // Send pings until the server has stopped taking them for half a second.
    while sent < 800_000 && blocked_since.is_none_or(|since| since.elapsed() < Duration::from_millis(500)) {
        match pinger.write(&pings[at..]) {
            Ok(n) => {
                blocked_since = None;
                at += n;
                if at == pings.len() {
                    (at, sent) = (0, sent + 1000);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                blocked_since.get_or_insert_with(Instant::now);
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
    let growth_kib = server.rss_kib().saturating_sub(baseline_kib);
    assert!(growth_kib < 8 * 1024, "{sent} pings made the server grow by {growth_kib} KiB");
    // The server still serves others...
    let mut other = server.chat_client("other");
    send(&mut other, "/who");
    recv_until(&mut other, |t| t.starts_with("*** in lobby"));
    // ...and the pinger, no longer read, is dropped by the idle and close timeouts.
    server.wait_for_log("no answer to ping");
    pinger.set_nonblocking(false).unwrap();
    expect_eof(&mut pinger);
}

both_modes!(endless_empty_fragments_are_closed_with_1009);
fn endless_empty_fragments_are_closed_with_1009(chat: &Chat) {
    let mut stream = raw_handshake(chat.next_process(), "/echo");
    let mut frames = client_frame(0x01, b"start", true);
    for _ in 0..5000 {
        frames.extend(client_frame(0x00, b"", true));
    }
    // The server may close before everything is written.
    let _ = stream.write_all(&frames);
    let close = loop {
        let frame = read_frame(&mut stream);
        if frame.opcode() == 8 {
            break frame;
        }
    };
    assert_eq!(close.close_code(), Some(1009));
    assert!(String::from_utf8_lossy(&close.payload[2..]).contains("fragments counted at least 64 bytes"));
}

both_modes!(a_flood_of_empty_continuation_frames_does_not_starve_other_clients);
fn a_flood_of_empty_continuation_frames_does_not_starve_other_clients(chat: &Chat) {
    // Both on one process: the flood must not starve the loop it shares with the other client
    // (in a cluster, nor that loop's link to Redis, which answers the other's /who).
    let mut flooder = raw_handshake(chat.process(0), "/echo");
    let mut drain = flooder.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut received = Vec::new();
        let _ = drain.read_to_end(&mut received);
        received
    });
    let stop = Instant::now() + Duration::from_secs(2);
    let writer = std::thread::spawn(move || {
        let _ = flooder.write_all(&client_frame(0x01, b"unfinished", true));
        let empties: Vec<u8> = (0..1000).flat_map(|_| client_frame(0x00, b"", true)).collect();
        while Instant::now() < stop && flooder.write_all(&empties).is_ok() {}
        let _ = flooder.shutdown(std::net::Shutdown::Both);
    });
    let mut other = chat.process(0).chat_client("other");
    let mut slowest = Duration::ZERO;
    while Instant::now() < stop {
        let start = Instant::now();
        send(&mut other, "/who");
        recv_until(&mut other, |t| t.starts_with("*** in lobby"));
        slowest = slowest.max(start.elapsed());
    }
    writer.join().unwrap();
    let received = reader.join().unwrap();
    // Nothing but the close frame comes back: the fragments never make a message.
    assert_eq!(received.get(..4), Some(&[0x88, received[1], 0x03, 0xf1][..]), "closed with 1009");
    // Not a performance goal (the soak measures that): a starved client waited seconds.
    assert!(slowest < Duration::from_millis(500), "a /who took {slowest:?} under the flood");
}

both_modes!(log_lines_cannot_be_forged_from_the_chat, ["-vv"]);
fn log_lines_cannot_be_forged_from_the_chat(chat: &Chat) {
    let mut alice = chat.chat_client("alice");
    send(&mut alice, "hello\n[WARN] admin logged in");
    send(&mut alice, "/quit bye\r\n[ERROR] disk full");
    send(&mut alice, "/quit");
    let _ = expect_close(&mut alice);
    chat.wait_for_log("removed");
    for line in chat.log() {
        assert!(!line.starts_with("[WARN] admin") && !line.starts_with("[ERROR] disk"), "forged: {line}");
    }
}

// One process only: --max-connections-per-ip counts the connections of one process.
#[test]
fn one_address_cannot_take_every_slot() {
    let server = TestServer::start(&["--max-connections-per-ip", "2"]);
    let _a = server.chat_client("a");
    let b = server.chat_client("b");
    let response = http_exchange(&server, &upgrade_request(&server, "/"));
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("too many connections from your address"), "{response}");
    drop(b);
    let deadline = Instant::now() + WAIT;
    while tungstenite::client(server.url("/?nick=c"), server.tcp()).is_err() {
        assert!(Instant::now() < deadline, "the freed slot was never given back");
        std::thread::sleep(Duration::from_millis(20));
    }
}

both_modes!(the_servers_own_notices_fit_the_smallest_queue, ["--max-outbound", "65792"]);
fn the_servers_own_notices_fit_the_smallest_queue(chat: &Chat) {
    // 64 KiB messages + 256 bytes of slack; a nick and a room of 32 four-byte characters and a
    // 65,530-byte quit reason once made a leave notice larger than that. (U+1E7E0, an Ethiopic
    // syllable, is allowed in names; U+20000, used before, no longer is, and the test had
    // quietly become one about a guest in the lobby.)
    let wide: String = std::iter::repeat_n('\u{1E7E0}', 32).collect();
    let encoded: String = wide.bytes().map(|b| format!("%{b:02X}")).collect();
    let mut a = chat.connect(&format!("/?nick={encoded}"));
    let welcome = recv_until(&mut a, |t| t.starts_with("*** welcome"));
    assert!(welcome.starts_with(&format!("*** welcome, you are {wide} in lobby")), "{welcome}");
    let mut b = chat.chat_client("b");
    send(&mut a, &format!("/join {wide}"));
    send(&mut b, &format!("/join {wide}"));
    // Once b hears its own join it is in the room: in a's /who, and hearing a leave. (Without
    // this wait a's /who could be answered before b's /join was read.)
    recv_line(&mut b, &format!("*** b joined {wide}"));
    send(&mut a, "/who");
    recv_until(&mut a, |t| t.starts_with("*** in ") && t.contains(" b"));
    send(&mut a, &format!("/quit {}", "q".repeat(65_530)));
    let notice = recv_until(&mut b, |t| t.contains(" left "));
    assert!(notice.len() < 400, "the quit reason is cut: {} bytes", notice.len());
    send(&mut b, "/who");
    recv_until(&mut b, |t| t.starts_with("*** in "));
}

both_modes!(one_message_is_one_line);
fn one_message_is_one_line(chat: &Chat) {
    let mut clients = chat.chat_room(&["alice", "bob"]);
    for forged in
        ["hi\n*** alice is now known as admin", "\x1b]0;pwned\x07", "x\r[PM from alice] paste your password"]
    {
        send(&mut clients[0], forged);
        let error = recv_text(&mut clients[0]);
        assert!(error.starts_with("*** error: a message is one line"), "{error}");
    }
    send(&mut clients[0], "still here");
    assert_eq!(recv_text(&mut clients[1]), "alice: still here", "bob saw nothing of the forged lines");
}
