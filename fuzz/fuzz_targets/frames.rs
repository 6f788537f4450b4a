//! Arbitrary bytes after a valid handshake, on the echo (first byte even) or chat (odd)
//! endpoint: frame parsing, limits, UTF-8 checks and chat dispatch must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::memory::{self, Verdict};

const ECHO: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
const CHAT: &[u8] = b"GET /?nick=fuzz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frames)) = data.split_first() else { return };
    let mut config = wschat::Config::with_addr("127.0.0.1:0".parse().unwrap());
    config.max_message_size = 4096;
    config.max_outbound = 8192;
    let request = if selector % 2 == 0 { ECHO } else { CHAT };
    let verdict = memory::drive(&config, request, frames);
    assert!(matches!(verdict, Verdict::Upgraded { .. }));
});
