//! Property-based versions of the fuzz targets in `fuzz/`, bounded so they run in `cargo test`:
//! arbitrary request heads, arbitrary bytes after a valid handshake, arbitrary chat command
//! lines. Each runs the in-memory connection of `wschat::memory` (the server's own parsing,
//! handshake, frame reading and chat dispatch) and asserts it neither panics nor breaks the
//! chat's invariants. A crash found here or by the fuzzer becomes a case in `regressions`.

use proptest::prelude::*;
use wschat::memory::{self, Verdict};
use wschat::Config;

const UPGRADE_ECHO: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
const UPGRADE_CHAT: &[u8] =
    b"GET /?nick=fuzz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

fn config() -> Config {
    let mut config = Config::with_addr("127.0.0.1:0".parse().unwrap());
    // Small limits so the generated inputs reach them.
    config.max_message_size = 4096;
    config.max_outbound = 8192;
    config
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
            let mut head = UPGRADE_CHAT.to_vec();
            let at = at % head.len();
            head.splice(at..at, noise);
            head
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_requests_get_a_verdict(request in request()) {
        let verdict = memory::drive(&config(), &request, b"");
        if let Verdict::Http(status) = verdict {
            prop_assert!((200..600).contains(&status), "status {status}");
        }
    }

    #[test]
    fn arbitrary_frames_after_the_echo_handshake(frames in prop::collection::vec(frame(), 0..12), tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let bytes: Vec<u8> = frames.concat().into_iter().chain(tail).collect();
        let verdict = memory::drive(&config(), UPGRADE_ECHO, &bytes);
        prop_assert!(matches!(verdict, Verdict::Upgraded { .. }), "{verdict:?}");
    }

    #[test]
    fn arbitrary_bytes_after_the_chat_handshake(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let verdict = memory::drive(&config(), UPGRADE_CHAT, &bytes);
        prop_assert!(matches!(verdict, Verdict::Upgraded { .. }), "{verdict:?}");
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
        memory::drive_chat_lines(&lines);
    }
}

/// Edge cases the generators reach only rarely, pinned as plain tests; a crash found by a
/// property above or by the fuzzer is added here.
mod regressions {
    use super::*;

    #[test]
    fn a_close_frame_with_a_one_byte_payload() {
        let frame = [0x88, 0x81, 1, 2, 3, 4, 0x03 ^ 1];
        let verdict = memory::drive(&config(), UPGRADE_ECHO, &frame);
        assert!(matches!(verdict, Verdict::Upgraded { messages: 0, ending: Some(_) }), "{verdict:?}");
    }

    #[test]
    fn quitting_twice_and_rejoining_with_the_same_line() {
        memory::drive_chat_lines(&[(0, "/quit"), (0, "/quit"), (0, "guest-1"), (1, "/nick guest-1")]);
    }
}
