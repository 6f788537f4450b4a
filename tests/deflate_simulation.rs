//! permessage-deflate's way in, through the simulation (the server's own hub and connections
//! over scripted sockets): the inflating shim stays live under the per-turn budget, parking,
//! backpressure and any read size; a message read before a refused frame is still delivered;
//! inflated bytes are charged to the budget (a debt the next turns pay) but the metrics count
//! the wire. (Found by an adversarial review; the handshake and the wire are `tests/deflate.rs`.)

use flate2::{Compress, Compression, FlushCompress};
use wschat::sim::Simulation;
use wschat::wire::client_frame;
use wschat::{Config, Settings};

fn settings(max_message: usize) -> Settings {
    let mut config = Config::with_addr("127.0.0.1:0".parse().unwrap());
    config.max_message_size = max_message;
    config.max_outbound = 64 << 20;
    config.max_messages_per_sec = 0;
    // Echoes go plain, so the sim client (which does not inflate) can read them.
    config.deflate_min_size = usize::MAX;
    config.settings().unwrap()
}

fn compress(payload: &[u8]) -> Vec<u8> {
    let mut deflate = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    deflate.compress_vec(payload, &mut out, FlushCompress::Sync).unwrap();
    out.truncate(out.len() - 4);
    out
}

const KEY: Option<[u8; 4]> = Some([0x11, 0x22, 0x33, 0x44]);

/// Every message a deflate client sends on /echo, compressed or plain, fragmented or whole,
/// with pings between, comes back, whatever the read sizes, however many per turn.
#[test]
fn every_message_is_echoed_whatever_the_piece_size() {
    for piece in [0usize, 1, 2, 3, 5, 7, 13, 64, 255, 256, 1000] {
        for big in [false, true] {
            let mut sim = Simulation::new(settings(64 << 10));
            let client = sim.upgrade_offering_deflate("/echo");
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for i in 0..300 {
                let text = if big && i % 10 == 0 {
                    format!("{i} {}", "y".repeat(60_000))
                } else {
                    format!("{i} {}", "x".repeat(i % 50))
                };
                let deflated = compress(text.as_bytes());
                match i % 5 {
                    0 => bytes.extend(client_frame(0x80 | 0x40 | 0x01, &deflated, KEY)),
                    1 => bytes.extend(client_frame(0x81, text.as_bytes(), KEY)),
                    2 => {
                        let half = deflated.len() / 2;
                        bytes.extend(client_frame(0x40 | 0x01, &deflated[..half], KEY));
                        bytes.extend(client_frame(0x89, b"ping", KEY));
                        bytes.extend(client_frame(0x80, &deflated[half..], KEY));
                    }
                    3 => {
                        bytes.extend(client_frame(0x80 | 0x40 | 0x01, &deflated, KEY));
                        bytes.extend(client_frame(0x8a, b"pong", KEY));
                    }
                    _ => {
                        bytes.extend(client_frame(0x40 | 0x01, &deflated, KEY));
                        bytes.extend(client_frame(0x80, b"", KEY));
                    }
                }
                expected.push(text);
            }
            sim.set_piece(client, piece);
            sim.send(client, &bytes);
            sim.settle();
            let texts = sim.texts(client);
            assert_eq!(sim.close_code(client), None, "piece {piece} big {big}");
            assert_eq!(texts.len(), expected.len(), "piece {piece} big {big}: echoes");
            assert!(texts == expected, "piece {piece} big {big}: echoes differ");
        }
    }
}

/// A client's plain message read in the same read as a later compressed frame the shim
/// refuses: without compression, tungstenite hands the message over before it meets the
/// error; through the shim the message is lost.
#[test]
fn a_message_before_a_refused_frame_in_the_same_read_is_still_delivered() {
    for deflate in [false, true] {
        let mut sim = Simulation::new(settings(64 << 10));
        let client = if deflate { sim.upgrade_offering_deflate("/echo") } else { sim.upgrade("/echo") };
        let mut bytes = client_frame(0x81, b"first", KEY);
        // RSV1 on a ping: a protocol error with or without the extension.
        bytes.extend(client_frame(0x80 | 0x40 | 0x09, b"", KEY));
        sim.send(client, &bytes);
        sim.settle();
        assert_eq!(sim.close_code(client), Some(1002), "deflate {deflate}");
        assert_eq!(sim.texts(client), ["first"], "deflate {deflate}: the message sent before the error");
    }
}

/// The same stream split in two at every byte, with turns between the halves (the connection
/// may park at a frame boundary, and must not at any other): everything is echoed.
#[test]
fn split_at_every_byte_with_turns_between() {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..6 {
        let text = format!("{i} {}", "z".repeat(200 + i));
        let deflated = compress(text.as_bytes());
        if i % 2 == 0 {
            bytes.extend(client_frame(0x80 | 0x40 | 0x01, &deflated, KEY));
        } else {
            let half = deflated.len() / 2;
            bytes.extend(client_frame(0x40 | 0x01, &deflated[..half], KEY));
            bytes.extend(client_frame(0x89, b"p", KEY));
            bytes.extend(client_frame(0x00, &deflated[half..], KEY));
            bytes.extend(client_frame(0x80, b"", KEY));
        }
        bytes.extend(client_frame(0x81, b"plain", KEY));
        expected.push(text);
        expected.push("plain".to_string());
    }
    // A big one too (over the default 256-byte read buffer, several reads).
    let big = "w".repeat(64 << 10);
    bytes.extend(client_frame(0x80 | 0x40 | 0x01, &compress(big.as_bytes()), KEY));
    expected.push(big);
    for piece in [0usize, 3] {
        for split in 0..=bytes.len() {
            let mut sim = Simulation::new(settings(64 << 10));
            let client = sim.upgrade_offering_deflate("/echo");
            sim.set_piece(client, piece);
            sim.send(client, &bytes[..split]);
            sim.settle();
            sim.step();
            sim.send(client, &bytes[split..]);
            sim.settle();
            assert_eq!(sim.close_code(client), None, "split {split} piece {piece}");
            let texts = sim.texts(client);
            assert!(
                texts == expected,
                "split {split} piece {piece}: {} of {} echoed",
                texts.len(),
                expected.len()
            );
        }
    }
}

/// EOF in the middle of a compressed message ends the connection (it does not wait for ever).
#[test]
fn eof_mid_compressed_message_ends_the_connection() {
    let mut sim = Simulation::new(settings(64 << 10));
    let client = sim.upgrade_offering_deflate("/echo");
    let deflated = compress("q".repeat(500).as_bytes());
    sim.send(client, &client_frame(0x40 | 0x01, &deflated, KEY));
    sim.settle();
    sim.shut_down_input(client);
    sim.settle();
    assert!(!sim.is_connected(client) || sim.is_write_shut(client), "EOF mid-message left it open");
}

/// A message that inflates to exactly --max-message-size passes; one byte more is 1009.
#[test]
fn exactly_the_limit_inflated() {
    for (len, code) in [(4096usize, None), (4097, Some(1009))] {
        let mut sim = Simulation::new(settings(4096));
        let client = sim.upgrade_offering_deflate("/echo");
        sim.send(client, &client_frame(0x80 | 0x40 | 0x02, &compress(&vec![b'a'; len]), KEY));
        sim.settle();
        assert_eq!(sim.close_code(client), code, "{len}");
    }
}

/// Inflated bytes are charged to the turn's budget, and what a message costs past it is a debt
/// the next turns pay: four 4 MiB messages compressed (16 KiB on the wire each) take the turns
/// their inflated size would, not one turn each.
#[test]
fn an_inflated_message_costs_the_turns_its_size_would() {
    let turns = |deflate: bool| {
        let mut s = settings(4 << 20);
        s.read_pause_bytes = usize::MAX;
        let mut sim = Simulation::new(s);
        let client = if deflate { sim.upgrade_offering_deflate("/echo") } else { sim.upgrade("/echo") };
        let payload = vec![b'a'; 4 << 20];
        let one = if deflate {
            client_frame(0x80 | 0x40 | 0x02, &compress(&payload), KEY)
        } else {
            client_frame(0x82, &payload, KEY)
        };
        for _ in 0..4 {
            sim.send(client, &one);
        }
        let mut turns = 0;
        while sim.frames(client).iter().filter(|f| f.opcode == 2).count() < 4 {
            sim.step();
            turns += 1;
            assert!(turns < 10_000, "never read");
        }
        turns
    };
    let (compressed, plain) = (turns(true), turns(false));
    // 4 MiB at 256 KiB a turn is 16 turns. Plain, each message is read over its 16; compressed,
    // each arrives in one turn and its 16 are paid after it, so the last one's come after the
    // four are delivered: 3 x 16 (without the debt it was 4 turns in all).
    assert!(plain >= 64, "plain: {plain} turns");
    assert!(compressed >= 48, "compressed: {compressed} turns, plain: {plain}");
}

/// `wschat_received_bytes_total` ("Bytes read from clients, after TLS") counts what came off
/// the socket, not what a compressed message inflated to.
#[test]
fn received_bytes_count_the_wire_not_the_inflated_size() {
    let received = |sim: &Simulation| -> u64 {
        let metrics = sim.hub().render_metrics(0.0, None);
        metrics
            .lines()
            .find(|l| l.starts_with("wschat_received_bytes_total"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no received counter in:\n{metrics}"))
            .parse()
            .unwrap()
    };
    let mut sim = Simulation::new(settings(1 << 20));
    let client = sim.upgrade_offering_deflate("/echo");
    let before = received(&sim);
    let frame = client_frame(0x80 | 0x40 | 0x02, &compress(&vec![0u8; 1 << 20]), KEY);
    sim.send(client, &frame);
    sim.settle();
    assert_eq!(sim.frames(client).iter().filter(|f| f.opcode == 2).count(), 1);
    let counted = received(&sim) - before;
    assert_eq!(counted, frame.len() as u64, "{} bytes on the wire counted as {counted}", frame.len());
}

/// Backpressure (reading paused while the client's queue is over half --max-outbound) with
/// bytes held in the shim: the client drains its socket a little every turn; every message is
/// echoed and nothing stalls.
#[test]
fn reading_paused_with_bytes_held_in_the_shim() {
    for piece in [0usize, 7, 256] {
        let mut config = Config::with_addr("127.0.0.1:0".parse().unwrap());
        config.max_message_size = 4096;
        config.max_outbound = 8192;
        config.max_messages_per_sec = 0;
        config.deflate_min_size = usize::MAX;
        let mut sim = Simulation::new(config.settings().unwrap());
        let client = sim.upgrade_offering_deflate("/echo");
        sim.set_piece(client, piece);
        sim.set_window(client, Some(0));
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for i in 0..400 {
            let text = format!("{i} {}", "r".repeat(if i % 3 == 0 { 3000 } else { i % 40 }));
            bytes.extend(client_frame(0x80 | 0x40 | 0x01, &compress(text.as_bytes()), KEY));
            expected.push(text);
        }
        sim.send(client, &bytes);
        for _ in 0..20_000 {
            sim.step();
            sim.drain(client, 1000);
            if sim.texts(client).len() == expected.len() {
                break;
            }
        }
        assert_eq!(sim.close_code(client), None, "piece {piece}");
        let texts = sim.texts(client);
        assert!(texts == expected, "piece {piece}: {} of {} echoed", texts.len(), expected.len());
    }
}

/// A close frame between a compressed message's fragments is answered at once.
#[test]
fn a_close_between_compressed_fragments_is_answered() {
    let mut sim = Simulation::new(settings(64 << 10));
    let client = sim.upgrade_offering_deflate("/echo");
    let deflated = compress("c".repeat(300).as_bytes());
    let mut bytes = client_frame(0x40 | 0x01, &deflated[..3], KEY);
    bytes.extend(client_frame(0x88, &1000u16.to_be_bytes(), KEY));
    bytes.extend(client_frame(0x80, &deflated[3..], KEY));
    sim.send(client, &bytes);
    sim.settle();
    assert_eq!(sim.close_code(client), Some(1000));
    assert!(sim.texts(client).is_empty());
}
