//! Arbitrary bytes after a valid handshake, through the simulation, on the echo (first byte
//! even) or chat (odd) endpoint, with permessage-deflate negotiated (the first byte's second
//! bit: RSV1 frames are then compressed messages, inflated on the way in) or not, read by the
//! server in pieces of the second byte's size:
//! frame parsing, limits, the rate limit, UTF-8 checks, the chat, fan-out and the
//! `--max-outbound` rule must never panic, and a reader that takes everything is never cut off
//! (see `wschat::sim::scenarios`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::sim::scenarios::{self, small_limits};

fuzz_target!(|data: &[u8]| {
    let [selector, piece, frames @ ..] = data else { return };
    let path = if selector % 2 == 0 { "/echo" } else { "/?nick=fuzz" };
    if selector & 2 == 0 {
        scenarios::frames_after_handshake(small_limits(), path, frames, usize::from(*piece));
    } else {
        scenarios::frames_after_deflate_handshake(small_limits(), path, frames, usize::from(*piece));
    }
});
