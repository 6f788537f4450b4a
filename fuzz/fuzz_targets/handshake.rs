//! Arbitrary bytes as an HTTP request head: routing, the page, the origin policy and
//! tungstenite's handshake must answer anything without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::memory::{self, Verdict};

fuzz_target!(|data: &[u8]| {
    let config = wschat::Config::with_addr("127.0.0.1:0".parse().unwrap());
    if let Verdict::Http(status) = memory::drive(&config, data, b"") {
        assert!((200..600).contains(&status));
    }
});
