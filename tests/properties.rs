//! Property-based versions of the fuzz targets in `fuzz/`, bounded so they run in `cargo test`:
//! arbitrary request heads, arbitrary bytes after a valid handshake (read in arbitrary pieces),
//! arbitrary chat command lines, and arbitrary heavy traffic. Each runs the simulation of
//! `wschat::sim`, which drives the server's own hub, connections, chat and fan-out over
//! scripted sockets, and the shared drivers in `wschat::sim::scenarios` panic if a rule breaks
//! (chat consistent, no queue over `--max-outbound`, a reader whose socket accepts everything
//! never cut off). A crash found here or by the fuzzer becomes a case in `regressions`.

use proptest::prelude::*;
use wschat::sim::scenarios::{self, small_limits};
use wschat::sim::Simulation;
use wschat::wire::{client_frame, UpgradeRequest};
use wschat::Settings;

fn defaults() -> Settings {
    Settings::with_addr("127.0.0.1:0".parse().unwrap())
}

/// A client frame with generated header bits, length encoding and masking.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), prop::collection::vec(any::<u8>(), 0..300), any::<bool>(), 0u8..3, any::<[u8; 4]>())
        .prop_map(|(first, payload, masked, length_form, key)| {
            let mut out = vec![first];
            let mask_bit = if masked { 0x80 } else { 0 };
            let len = payload.len();
            match length_form {
                0 if len < 126 => out.push(mask_bit | len as u8),
                0 | 1 => {
                    out.push(mask_bit | 126);
                    out.extend_from_slice(&(len as u16).to_be_bytes());
                }
                _ => {
                    out.push(mask_bit | 127);
                    out.extend_from_slice(&(len as u64).to_be_bytes());
                }
            }
            if masked {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            } else {
                out.extend_from_slice(&payload);
            }
            out
        })
}

/// A compressed text or binary message of generated text (or a bomb of one repeated byte),
/// in 1 to 4 fragments, maybe with a ping between two of them.
fn compressed_message() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), "[a-z ]{0,600}", 0usize..200_000, 1usize..5, any::<bool>()).prop_map(
        |(text, words, bomb, parts, ping)| {
            let payload = if bomb > 100_000 { vec![b'z'; bomb] } else { words.into_bytes() };
            let mut compressed = Vec::new();
            assert!(wschat::deflate::Compressor::default().compress(&payload, 15, &mut compressed));
            let size = compressed.len().div_ceil(parts).max(1);
            let chunks: Vec<&[u8]> = compressed.chunks(size).collect();
            let chunks = if chunks.is_empty() { vec![&[][..]] } else { chunks };
            let mut out = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let opcode = if i > 0 {
                    0x0
                } else if text {
                    0x41
                } else {
                    0x42
                };
                let fin = if i + 1 == chunks.len() { 0x80 } else { 0 };
                out.extend(client_frame(fin | opcode, chunk, Some([3, 1, 4, 1])));
                if ping && i == 0 {
                    out.extend(client_frame(0x89, b"between", Some([2, 7, 1, 8])));
                }
            }
            out
        },
    )
}

/// Mostly plausible request heads, with arbitrary damage.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let plausible = (
        prop::sample::select(vec!["GET", "HEAD", "POST", "get", ""]),
        prop::sample::select(vec!["/", "/echo", "/?nick=a%20b", "/app.js", "/x?nick=%", "*"]),
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2", ""]),
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "Host",
                    "Upgrade",
                    "Connection",
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Version",
                    "Origin",
                    "If-None-Match",
                ]),
                "[ -~]{0,40}",
            ),
            0..8,
        ),
    )
        .prop_map(|(method, path, version, headers)| {
            let mut head = format!("{method} {path} {version}\r\n");
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            head.into_bytes()
        });
    prop_oneof![
        plausible,
        prop::collection::vec(any::<u8>(), 0..600),
        (prop::collection::vec(any::<u8>(), 0..64), any::<usize>()).prop_map(|(noise, at)| {
            let mut head = UpgradeRequest::new("x", "/?nick=fuzz").to_bytes();
            let at = at % head.len();
            head.splice(at..at, noise);
            head
        }),
    ]
}

/// One message of heavy but valid traffic: who sends it and how big it is.
fn traffic() -> impl Strategy<Value = Vec<(usize, usize)>> {
    prop::collection::vec((0usize..2, prop_oneof![0usize..64, 3000usize..4000]), 1..200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_requests_get_a_verdict(request in request()) {
        if let Some(status) = scenarios::judge_request(defaults(), &request) {
            prop_assert!(status == 101 || (200..600).contains(&status), "status {status}");
        }
    }

    #[test]
    fn arbitrary_frames_after_the_echo_handshake(
        frames in prop::collection::vec(frame(), 0..12),
        tail in prop::collection::vec(any::<u8>(), 0..64),
        piece in 0usize..40,
    ) {
        let bytes: Vec<u8> = frames.concat().into_iter().chain(tail).collect();
        scenarios::frames_after_handshake(small_limits(), "/echo", &bytes, piece);
    }

    /// Frames from a client that negotiated permessage-deflate: arbitrary ones, and compressed
    /// messages of generated text in generated fragments (RSV1 on the first, control frames
    /// between), read in arbitrary pieces, on the echo or the chat.
    #[test]
    fn compressed_and_arbitrary_frames_after_a_deflate_handshake(
        frames in prop::collection::vec(prop_oneof![frame(), compressed_message()], 0..12),
        chat in any::<bool>(),
        piece in 0usize..40,
    ) {
        let path = if chat { "/?nick=fuzz" } else { "/echo" };
        scenarios::frames_after_deflate_handshake(small_limits(), path, &frames.concat(), piece);
    }

    #[test]
    fn arbitrary_frames_after_the_chat_handshake(
        frames in prop::collection::vec(frame(), 0..12),
        piece in 0usize..40,
    ) {
        scenarios::frames_after_handshake(small_limits(), "/?nick=fuzz", &frames.concat(), piece);
    }

    #[test]
    fn arbitrary_bytes_after_the_chat_handshake(bytes in prop::collection::vec(any::<u8>(), 0..2048), piece in 0usize..40) {
        scenarios::frames_after_handshake(small_limits(), "/?nick=fuzz", &bytes, piece);
    }

    /// Floods of one kind of frame (the per-turn budget, the fragment cap, backpressure and the
    /// frame-rate limit at work), read in arbitrary pieces.
    #[test]
    fn floods_of_one_frame_kind(
        first in prop::sample::select(vec![0x00u8, 0x80, 0x01, 0x89, 0x8a, 0x81, 0x82]),
        payload in 0usize..200,
        count in 0usize..3000,
        start_fragmented in any::<bool>(),
        piece in 0usize..600,
        rate_limited in any::<bool>(),
    ) {
        let mut settings = small_limits();
        if !rate_limited {
            settings.max_messages_per_sec = 0;
        }
        let mut bytes = if start_fragmented { client_frame(0x01, b"start", Some([1, 2, 3, 4])) } else { Vec::new() };
        let one = client_frame(first, &vec![b'f'; payload], Some([5, 6, 7, 8]));
        for _ in 0..count {
            bytes.extend_from_slice(&one);
        }
        scenarios::frames_after_handshake(settings, "/?nick=flood", &bytes, piece);
    }

    #[test]
    fn arbitrary_chat_lines_keep_the_chat_consistent(
        lines in prop::collection::vec(
            (0usize..6, prop_oneof![
                "/(nick|join|msg|me|who|rooms|help|quit|NICK|Join) ?[^\n]{0,40}",
                "/(nick|join) [a-zA-Z*\\[:]{1,40}",
                "/msg guest-[1-4] [a-z ]{0,10}",
                "[^\n]{0,60}",
            ]),
            0..40,
        )
    ) {
        let lines: Vec<(usize, &str)> = lines.iter().map(|(c, l)| (*c, l.as_str())).collect();
        scenarios::chat_lines(&lines);
    }

    /// A connection whose socket accepts everything is never cut off, whatever the others
    /// send: bursts of large messages from two senders reach it whole and in order, while a
    /// member that never reads is cut off.
    #[test]
    fn a_reader_that_accepts_everything_is_never_cut_off(traffic in traffic()) {
        let mut settings = small_limits();
        settings.max_messages_per_sec = 0;
        let mut sim = Simulation::new(settings);
        let reader = sim.upgrade("/?nick=reader");
        let sleeper = sim.upgrade("/?nick=sleeper");
        let senders = [sim.upgrade("/?nick=s0"), sim.upgrade("/?nick=s1")];
        sim.set_window(sleeper, Some(0));
        let before = sim.texts(reader).len();
        let mut expected = Vec::new();
        for (turn, chunk) in traffic.chunks(40).enumerate() {
            for (i, (sender, size)) in chunk.iter().enumerate() {
                let text = format!("{turn}.{i} {}", "x".repeat(*size));
                let mask = [turn as u8, i as u8, 7, 9];
                sim.send(senders[*sender], &client_frame(0x81, text.as_bytes(), Some(mask)));
                expected.push(format!("s{sender}: {text}"));
            }
            sim.settle();
        }
        prop_assert_eq!(sim.close_code(reader), None);
        let received = &sim.texts(reader)[before..];
        prop_assert_eq!(received.len(), expected.len());
        for sender in ["s0: ", "s1: "] {
            // Each sender's messages arrive whole and in order (senders interleave as read).
            let from = |lines: &[String]| lines.iter().filter(|l| l.starts_with(sender)).cloned().collect::<Vec<_>>();
            prop_assert_eq!(from(received), from(&expected));
        }
        let total: usize = expected.iter().map(|t| t.len()).sum();
        prop_assert!(sim.queued(sleeper) <= sim.settings().max_outbound);
        if total > sim.settings().max_outbound {
            prop_assert!(!sim.accepts_messages(sleeper), "a member that never reads was not cut off");
        }
    }
}

/// Edge cases the generators reach only rarely, pinned as plain tests; a crash found by a
/// property above or by the fuzzer is added here.
mod regressions {
    use super::*;

    #[test]
    fn a_close_frame_with_a_one_byte_payload() {
        let frame = [0x88, 0x81, 1, 2, 3, 4, 0x03 ^ 1];
        assert_eq!(scenarios::frames_after_handshake(small_limits(), "/echo", &frame, 0), Some(1002));
    }

    /// Found by `floods_of_one_frame_kind`: once over the fragment cap, a finishing connection
    /// was never drained (the meter refused its reads) and was read again every turn.
    #[test]
    fn a_connection_closed_for_too_many_fragments_finishes() {
        let mut bytes = client_frame(0x01, b"start", Some([1, 2, 3, 4]));
        for _ in 0..1024 {
            bytes.extend(client_frame(0x00, b"", Some([5, 6, 7, 8])));
        }
        let mut settings = small_limits();
        settings.max_messages_per_sec = 0;
        assert_eq!(scenarios::frames_after_handshake(settings, "/echo", &bytes, 0), Some(1009));
    }

    /// Found by `floods_of_one_frame_kind`: a connection closed by the rate limit whose
    /// fragmented message then went over the limit had every read refused, so it was read
    /// again every turn and never settled.
    #[test]
    fn a_closing_connection_over_the_fragment_limit_still_finishes() {
        let mut bytes = client_frame(0x01, b"start", Some([1, 2, 3, 4]));
        for _ in 0..169 {
            bytes.extend(client_frame(0x00, b"", Some([5, 6, 7, 8])));
        }
        scenarios::frames_after_handshake(small_limits(), "/?nick=flood", &bytes, 0);
    }

    #[test]
    fn quitting_twice_and_rejoining_with_the_same_line() {
        scenarios::chat_lines(&[(0, "/quit"), (0, "/quit"), (0, "guest-1"), (1, "/nick guest-1")]);
    }
}
