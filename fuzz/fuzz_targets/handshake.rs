//! Arbitrary bytes as an HTTP request head, through the simulation: routing, the page, the
//! origin policy and tungstenite's handshake must answer anything (or drop it at the handshake
//! timeout) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::sim::scenarios;

fuzz_target!(|data: &[u8]| {
    let settings = wschat::Settings::with_addr("127.0.0.1:0".parse().unwrap());
    if let Some(status) = scenarios::judge_request(settings, data) {
        assert!(status == 101 || (200..600).contains(&status));
    }
});
